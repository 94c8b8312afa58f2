"""The training steps' loss and terms, gathered per step and logged in one go."""

from __future__ import annotations

import torch
from torch import Tensor

from vaeforge.api import MetricSink


class TrainStepStats:
    """Each training step's loss values (0-d tensors), held and added to a sink later.

    Holding a step's values costs no device op, so the hot path pays nothing
    for logging. :meth:`flush` stacks every held value in one op and adds each
    step as one observation of ``names`` to the sink; the trainer flushes before
    it reads or checkpoints the sink, so a resumed run sums in the same order
    as an uninterrupted one. At most ``max_rows`` steps are held.
    """

    def __init__(self, sink: MetricSink, max_rows: int = 1000):
        self.sink = sink
        self.max_rows = max_rows
        self.names: list[str] = []
        self.values: list[Tensor] = []

    def add(self, names: list[str], values: list[Tensor]) -> None:
        """One step's values, named by ``names`` (as many as there are values)."""
        if names != self.names or len(self.values) >= self.max_rows * len(names):
            self.flush()
            self.names = names
        self.values.extend(values)

    def flush(self) -> None:
        """Add the held steps to the sink."""
        if not self.values:
            return
        with torch.no_grad():
            matrix = torch.stack([v if v.dtype == torch.float32 else v.float() for v in self.values])
        self.sink.log_rows(self.names, matrix.reshape(-1, len(self.names)))
        self.values = []
