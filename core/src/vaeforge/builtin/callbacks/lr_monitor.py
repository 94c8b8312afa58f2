"""``lr_monitor``: log every parameter group's learning rate."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vaeforge.api import Callback


class LRMonitor(Callback):
    """Logs ``lr/group<i>`` for each optimizer parameter group after every epoch."""

    def __init__(self, config: None = None):
        del config

    def on_epoch_end(self, trainer: Any, metrics: Mapping[str, float]) -> None:
        trainer.log_metrics({f"lr/group{i}": float(g["lr"]) for i, g in enumerate(trainer.optimizer.param_groups)})
