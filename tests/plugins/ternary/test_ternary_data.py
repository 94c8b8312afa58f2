"""``ternary_ops`` and the operation encoding."""

from __future__ import annotations

import pytest
import torch

from vaeforge_ternary.data import TernaryOps, TernaryOpsConfig
from vaeforge_ternary.ops import NUM_OPS, all_operations, ideal_coverage, op_index


def test_all_operations_are_distinct_and_in_index_order():
    ops = all_operations()
    assert ops.shape == (NUM_OPS, 9) and ops.dtype == torch.long
    assert ops.min() == 0 and ops.max() == 2
    assert torch.equal(op_index(ops), torch.arange(NUM_OPS))
    assert len(torch.unique(ops, dim=0)) == NUM_OPS == 19_683


def test_data_source_has_every_operation_once_and_no_val_by_default():
    splits = TernaryOps(TernaryOpsConfig()).load()
    x = splits.train["x"]
    assert len(torch.unique(x, dim=0)) == len(x) == 19_683
    assert torch.equal(op_index(x), splits.train["y"])
    assert splits.val is None
    assert splits.info.shape == (9,) and splits.info.kind == "categorical"
    assert splits.info.num_classes == 3 and splits.info.num_train == 19_683


def test_val_split_is_disjoint_and_reproducible():
    first = TernaryOps(TernaryOpsConfig(val_fraction=0.1, split_seed=3)).load()
    again = TernaryOps(TernaryOpsConfig(val_fraction=0.1, split_seed=3)).load()
    train, val = set(first.train["y"].tolist()), set(first.val["y"].tolist())
    assert len(val) == round(0.1 * NUM_OPS) and not train & val and len(train | val) == NUM_OPS
    assert torch.equal(first.val["x"], again.val["x"])
    assert first.info.num_train == len(train)


def test_ideal_coverage():
    assert ideal_coverage(100_000) == pytest.approx(0.99378, abs=1e-5)
    assert ideal_coverage(1) == pytest.approx(1 / NUM_OPS)
