"""``checkpoint``: when to save, how many to keep, and the best one on a metric.

The trainer adds this callback with its defaults when a config lists none,
so every run can be resumed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from attrs import field, frozen
from attrs.validators import ge, in_, optional

from vaeforge.api import Callback, LossResult


@frozen(kw_only=True)
class CheckpointConfig:
    """Checkpoint schedule and retention.

    :param every_n_epochs: save after every N epochs (0 disables).
    :param every_n_steps: also save every N optimizer steps.
    :param keep_last: how many step checkpoints to keep per stage folder.
    :param save_best: also keep ``checkpoints/best`` for the best value of ``monitor``.
    :param monitor: the metric that decides the best checkpoint.
    :param mode: ``min`` or ``max``: which direction is better.
    """

    every_n_epochs: int = field(default=1, validator=ge(0))
    every_n_steps: int | None = field(default=None, validator=optional(ge(1)))
    keep_last: int = field(default=2, validator=ge(1))
    save_best: bool = False
    monitor: str = "val/loss"
    mode: str = field(default="min", validator=in_(["min", "max"]))


class Checkpoint(Callback):
    """Asks the trainer for checkpoints; the trainer writes them at safe points."""

    def __init__(self, config: CheckpointConfig | None):
        self.config = config or CheckpointConfig()
        self.best = math.inf if self.config.mode == "min" else -math.inf

    def on_batch_end(self, trainer: Any, result: LossResult) -> None:
        every = self.config.every_n_steps
        if every and trainer.global_step % every == 0:
            trainer.request_checkpoint(keep_last=self.config.keep_last)

    def on_epoch_end(self, trainer: Any, metrics: Mapping[str, float]) -> None:
        every = self.config.every_n_epochs
        best = False
        if self.config.save_best and self.config.monitor in metrics:
            value = metrics[self.config.monitor]
            better = value < self.best if self.config.mode == "min" else value > self.best
            if math.isfinite(value) and better:
                self.best, best = value, True
        if best or (every and (trainer.epoch + 1) % every == 0):
            trainer.request_checkpoint(best=best, keep_last=self.config.keep_last)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best = float(state["best"])
