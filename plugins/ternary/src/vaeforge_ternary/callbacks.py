"""``coverage_plateau``: end a stage once prior coverage has stopped improving."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from attrs import field, frozen
from attrs.validators import ge, le, optional

from vaeforge.api import Callback


@frozen(kw_only=True)
class CoveragePlateauConfig:
    """When coverage counts as converged.

    :param monitor: the coverage metric to watch (logged by the ``ternary_coverage`` metric).
    :param patience: validations in a row without an improvement larger than
        ``min_improvement`` before the stage ends.
    :param threshold: only stop once the metric has reached this value (a fraction, e.g.
        0.99); None stops on a plateau at any level.
    :param min_improvement: the smallest rise of the best value that resets the patience
        (a fraction of all operations: 0.0005 is about 10 operations).
    """

    monitor: str = "val/coverage_100k"
    patience: int = field(default=5, validator=ge(1))
    threshold: float | None = field(default=None, validator=optional([ge(0.0), le(1.0)]))
    min_improvement: float = field(default=0.0005, validator=ge(0.0))


class CoveragePlateau(Callback):
    """Counts validations without coverage improvement; stops when patience runs out above the threshold.

    Publishes ``coverage_plateau`` (``wait/patience``) in ``ctx.values`` for the progress display.

    Parameters:
        config (`CoveragePlateauConfig`): the monitored metric, patience, threshold, minimal improvement.
    """

    def __init__(self, config: CoveragePlateauConfig):
        self.config = config
        self.best: float | None = None
        self.wait = 0

    def on_stage_start(self, trainer: Any, stage: str) -> None:
        self.best, self.wait = None, 0

    def on_validation_end(self, trainer: Any, metrics: Mapping[str, float]) -> None:
        value = metrics.get(self.config.monitor)
        if value is None:
            return
        if self.best is None or value > self.best + self.config.min_improvement:
            self.best, self.wait = value, 0
        else:
            self.wait += 1
        trainer.ctx.values["coverage_plateau"] = f"{self.wait}/{self.config.patience}"

    def should_stop(self, trainer: Any) -> bool:
        reached = self.config.threshold is None or (self.best is not None and self.best >= self.config.threshold)
        return reached and self.wait >= self.config.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "wait": self.wait}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best = None if state["best"] is None else float(state["best"])
        self.wait = int(state["wait"])
