"""The ternary operations: 9-trit truth tables over {-1, 0, +1}.

An operation is stored as 9 class indices in ``0..2`` (class ``k`` is the
trit ``k - 1``), position ``i`` being the output for the ``i``-th of the 9
input pairs. Its *index* is the base-3 number whose ``i``-th digit is
position ``i`` (least significant first), so the 19,683 operations are
exactly the indices ``0 .. 3**9 - 1``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

NUM_TRITS = 9
NUM_CLASSES = 3
NUM_OPS = NUM_CLASSES**NUM_TRITS


def powers(device: torch.device | str | None = None) -> Tensor:
    """``[1, 3, 9, ..., 3**8]`` as int64: the place value of each position."""
    return NUM_CLASSES ** torch.arange(NUM_TRITS, device=device)


def all_operations(device: torch.device | str | None = None) -> Tensor:
    """Every operation once, in index order: a LongTensor ``[19683, 9]`` of classes ``0..2``."""
    index = torch.arange(NUM_OPS, device=device).unsqueeze(1)
    return (index // powers(device)) % NUM_CLASSES


def op_index(ops: Tensor) -> Tensor:
    """The base-3 index of each operation: ``[..., 9]`` classes -> ``[...]`` int64 in ``0..19682``."""
    return (ops.long() * powers(ops.device)).sum(dim=-1)


def ideal_coverage(n: int) -> float:
    """Expected fraction of distinct operations among ``n`` iid uniform draws: ``1 - (1 - 1/19683)**n``."""
    return -math.expm1(n * math.log1p(-1.0 / NUM_OPS))
