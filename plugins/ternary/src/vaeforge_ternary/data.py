"""``ternary_ops``: all 19,683 ternary operations on the in-memory fast path."""

from __future__ import annotations

import torch
from attrs import field, frozen
from attrs.validators import ge, lt

from vaeforge.api import DataInfo, DataSplits
from vaeforge_ternary.ops import NUM_CLASSES, NUM_TRITS, all_operations


@frozen(kw_only=True)
class TernaryOpsConfig:
    """Which operations train and which validate.

    :param val_fraction: the fraction of operations held out for validation; 0 trains on
        all 19,683 (the coverage benchmark) and leaves no validation split.
    :param split_seed: seed of the train/validation split.
    """

    val_fraction: float = field(default=0.0, validator=[ge(0.0), lt(1.0)])
    split_seed: int = 0


class TernaryOps:
    """Every 9-trit operation as ``x``: a LongTensor ``[N, 9]`` of classes 0..2, and its index as ``y``.

    ``y`` is the base-3 index (:func:`vaeforge_ternary.ops.op_index`), useful for
    losses that compare operations (the 3-adic ranking loss).

    Parameters:
        config (`TernaryOpsConfig`): the validation split.
    """

    def __init__(self, config: TernaryOpsConfig):
        self.config = config

    def load(self) -> DataSplits:
        x = all_operations()
        y = torch.arange(len(x))
        n_val = int(round(len(x) * self.config.val_fraction))
        if n_val == 0:
            train, val = {"x": x, "y": y}, None
        else:
            order = torch.randperm(len(x), generator=torch.Generator().manual_seed(self.config.split_seed))
            val_idx, train_idx = order[:n_val].sort().values, order[n_val:].sort().values
            train, val = {"x": x[train_idx], "y": y[train_idx]}, {"x": x[val_idx], "y": y[val_idx]}
        info = DataInfo(shape=(NUM_TRITS,), kind="categorical", num_classes=NUM_CLASSES, num_train=len(train["x"]))
        return DataSplits(train=train, val=val, info=info)
