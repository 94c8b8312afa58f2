"""Weight schedules for loss terms: ``schedule(step, epoch, steps_per_epoch) -> float``.

Durations are given in epochs or in steps (exactly one); progress in epochs
is fractional (``step / steps_per_epoch``), so a schedule moves every step.
"""

from __future__ import annotations

import math

from attrs import field, frozen
from attrs.validators import ge, gt, le, optional


@frozen(kw_only=True)
class ConstantConfig:
    """A fixed weight.

    :param value: the weight.
    """

    value: float = 1.0


class Constant:
    """Always ``value``."""

    def __init__(self, config: ConstantConfig):
        self.value = config.value

    def __call__(self, step: int, epoch: int, steps_per_epoch: int | None) -> float:
        return self.value


@frozen(kw_only=True)
class RampConfig:
    """A ramp from ``start`` to ``end`` over a duration, then flat.

    :param start: the weight at step 0.
    :param end: the weight once the duration has passed.
    :param epochs: the duration in epochs (give this or ``steps``).
    :param steps: the duration in optimizer steps.
    :param delay: epochs (or steps, with ``steps``) to hold ``start`` before the ramp begins.
    """

    start: float = 0.0
    end: float = 1.0
    epochs: float | None = field(default=None, validator=optional(gt(0.0)))
    steps: int | None = field(default=None, validator=optional(ge(1)))
    delay: float = field(default=0.0, validator=ge(0.0))

    def __attrs_post_init__(self) -> None:
        if (self.epochs is None) == (self.steps is None):
            raise ValueError("give exactly one of 'epochs' and 'steps'")


def _progress(config: RampConfig | CyclicConfig, step: int, steps_per_epoch: int | None, length: float) -> float:
    """Position in units of the schedule's duration (epochs or steps), after the delay."""
    if config.steps is not None:
        position = float(step)
    else:
        if not steps_per_epoch:
            raise ValueError("an epoch-based schedule needs a finite epoch; give the duration in 'steps'")
        position = step / steps_per_epoch
    return (position - config.delay) / length


class Linear:
    """Linear ramp from ``start`` to ``end``."""

    def __init__(self, config: RampConfig):
        self.config = config
        self.length = float(config.steps if config.steps is not None else config.epochs)

    def __call__(self, step: int, epoch: int, steps_per_epoch: int | None) -> float:
        t = min(max(_progress(self.config, step, steps_per_epoch, self.length), 0.0), 1.0)
        return self.config.start + (self.config.end - self.config.start) * t


class Cosine(Linear):
    """Half-cosine ramp from ``start`` to ``end`` (slow at both ends)."""

    def __call__(self, step: int, epoch: int, steps_per_epoch: int | None) -> float:
        t = min(max(_progress(self.config, step, steps_per_epoch, self.length), 0.0), 1.0)
        return self.config.start + (self.config.end - self.config.start) * 0.5 * (1.0 - math.cos(math.pi * t))


@frozen(kw_only=True)
class CyclicConfig:
    """Cyclical annealing (Fu et al., 2019): ramp for a fraction of each period, then hold.

    :param start: the weight at the start of each cycle.
    :param end: the weight held after the ramp.
    :param epochs: the period in epochs (give this or ``steps``).
    :param steps: the period in optimizer steps.
    :param ratio: the fraction of each period spent ramping.
    :param delay: epochs (or steps) to hold ``start`` before the first cycle.
    """

    start: float = 0.0
    end: float = 1.0
    epochs: float | None = field(default=None, validator=optional(gt(0.0)))
    steps: int | None = field(default=None, validator=optional(ge(1)))
    ratio: float = field(default=0.5, validator=[gt(0.0), le(1.0)])
    delay: float = field(default=0.0, validator=ge(0.0))

    def __attrs_post_init__(self) -> None:
        if (self.epochs is None) == (self.steps is None):
            raise ValueError("give exactly one of 'epochs' and 'steps'")


class Cyclic:
    """Repeat: ramp from ``start`` to ``end`` over ``ratio`` of the period, hold ``end`` for the rest."""

    def __init__(self, config: CyclicConfig):
        self.config = config
        self.length = float(config.steps if config.steps is not None else config.epochs)

    def __call__(self, step: int, epoch: int, steps_per_epoch: int | None) -> float:
        cycles = _progress(self.config, step, steps_per_epoch, self.length)
        if cycles < 0:
            return self.config.start
        t = min((cycles % 1.0) / self.config.ratio, 1.0)
        return self.config.start + (self.config.end - self.config.start) * t
