"""Shared helper of in-memory data sources: a seeded train/validation split."""

from __future__ import annotations

import torch
from torch import Tensor


def split_tensors(
    tensors: dict[str, Tensor], val_fraction: float, seed: int
) -> tuple[dict[str, Tensor], dict[str, Tensor] | None]:
    """Split equally long tensors into (train, val) by a seeded permutation; val is None for fraction 0."""
    n = len(next(iter(tensors.values())))
    n_val = int(round(n * val_fraction))
    if n_val == 0:
        return tensors, None
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = order[:n_val].sort().values, order[n_val:].sort().values
    return {k: v[train_idx] for k, v in tensors.items()}, {k: v[val_idx] for k, v in tensors.items()}
