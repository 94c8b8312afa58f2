"""``early_stopping``: end the stage when a monitored metric stops improving."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from attrs import field, frozen
from attrs.validators import ge, in_

from vaeforge.api import Callback


@frozen(kw_only=True)
class EarlyStoppingConfig:
    """When to give up.

    :param monitor: the metric to watch, e.g. ``val/loss``.
    :param mode: ``min`` if lower is better, ``max`` if higher is better.
    :param patience: epochs without improvement before stopping.
    :param min_delta: the smallest change that counts as an improvement.
    :param check_finite: stop at once when the metric becomes NaN or infinite.
    """

    monitor: str = "val/loss"
    mode: str = field(default="min", validator=in_(["min", "max"]))
    patience: int = field(default=10, validator=ge(1))
    min_delta: float = field(default=0.0, validator=ge(0.0))
    check_finite: bool = True


class EarlyStopping(Callback):
    """Counts epochs without improvement of ``monitor``; publishes ``patience`` for the progress bar."""

    def __init__(self, config: EarlyStoppingConfig):
        self.config = config
        self.best = math.inf if config.mode == "min" else -math.inf
        self.wait = 0
        self.stop = False
        self.reason = ""

    def _improved(self, value: float) -> bool:
        if self.config.mode == "min":
            return value < self.best - self.config.min_delta
        return value > self.best + self.config.min_delta

    def on_epoch_end(self, trainer: Any, metrics: Mapping[str, float]) -> None:
        value = metrics.get(self.config.monitor)
        if value is None:
            return
        if self.config.check_finite and not math.isfinite(value):
            self.stop, self.reason = True, f"{self.config.monitor} is {value}"
        elif self._improved(value):
            self.best, self.wait = value, 0
        else:
            self.wait += 1
            if self.wait >= self.config.patience:
                self.stop = True
                self.reason = f"{self.config.monitor} did not improve for {self.wait} epochs (best {self.best:.6g})"
        trainer.ctx.values["patience"] = f"{self.wait}/{self.config.patience}"

    def on_stage_start(self, trainer: Any, stage: str) -> None:
        self.best = math.inf if self.config.mode == "min" else -math.inf
        self.wait, self.stop = 0, False

    def should_stop(self, trainer: Any) -> bool:
        return self.stop

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "wait": self.wait, "stop": self.stop}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best, self.wait, self.stop = float(state["best"]), int(state["wait"]), bool(state["stop"])
