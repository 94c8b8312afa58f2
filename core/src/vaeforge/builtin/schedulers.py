"""Learning-rate schedulers stepped once per optimizer step: ``constant``, ``step``, ``warmup_cosine``."""

from __future__ import annotations

import math

import torch
from attrs import field, frozen
from attrs.validators import ge, gt, le, optional
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, StepLR


def constant(optimizer: torch.optim.Optimizer, config: None, total_steps: int | None) -> LRScheduler:
    """Keep the optimizer's learning rate."""
    return LambdaLR(optimizer, lambda step: 1.0)


@frozen(kw_only=True)
class StepConfig:
    """Multiply the learning rate by ``gamma`` every ``step_size`` steps.

    :param step_size: optimizer steps between decays.
    :param gamma: the decay factor.
    """

    step_size: int = field(validator=ge(1))
    gamma: float = field(default=0.1, validator=[gt(0.0), le(1.0)])


def step(optimizer: torch.optim.Optimizer, config: StepConfig, total_steps: int | None) -> LRScheduler:
    """``torch.optim.lr_scheduler.StepLR`` counted in optimizer steps."""
    return StepLR(optimizer, step_size=config.step_size, gamma=config.gamma)


@frozen(kw_only=True)
class WarmupCosineConfig:
    """Linear warm-up, then cosine decay to ``min_factor`` times the base rate.

    :param warmup_steps: steps of linear warm-up from zero.
    :param total_steps: steps until the end of the decay; defaults to the run's (or stage's) length.
    :param min_factor: the final learning rate as a fraction of the base rate.
    """

    warmup_steps: int = field(default=0, validator=ge(0))
    total_steps: int | None = field(default=None, validator=optional(ge(1)))
    min_factor: float = field(default=0.0, validator=[ge(0.0), le(1.0)])


def warmup_cosine(optimizer: torch.optim.Optimizer, config: WarmupCosineConfig, total_steps: int | None) -> LRScheduler:
    """Warm-up then cosine; needs a known length (``total_steps`` or a finite run)."""
    total = config.total_steps or total_steps
    if not total:
        raise ValueError("warmup_cosine needs total_steps for an endless stream")
    warmup = config.warmup_steps

    def factor(current: int) -> float:
        if current < warmup:
            return (current + 1) / warmup
        progress = min((current - warmup) / max(total - warmup, 1), 1.0)
        return config.min_factor + (1 - config.min_factor) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)
