"""Batches for the loop: an in-memory fast path, a DataLoader path and streams.

Every path is deterministic in ``(seed, stage, epoch)`` and can start in the
middle of an epoch, which is what makes resuming exact:

- a mapping of tensors is moved to the device once and indexed there by a
  per-epoch permutation (no per-sample collate);
- a map-style ``Dataset`` goes through a ``DataLoader`` (workers, pinned
  memory) whose batch sampler yields the same kind of permutation;
- an ``IterableDataset`` is batched by a ``DataLoader``; resuming skips the
  batches already consumed this epoch.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler, Subset

from vaeforge.config import DataConfig

Batch = dict[str, Tensor]


def epoch_seed(seed: int, stage: int, epoch: int) -> int:
    """The shuffling seed of one epoch of one stage."""
    return (seed * 1_000_003 + stage * 10_007 + epoch) % (2**63 - 1)


def _as_batch(item: Any) -> Batch:
    if isinstance(item, Mapping):
        return dict(item)
    if isinstance(item, Tensor):
        return {"x": item}
    if isinstance(item, (list, tuple)) and item and isinstance(item[0], Tensor):
        return {"x": item[0], **({"y": item[1]} if len(item) > 1 else {})}
    raise TypeError(f"a data source yielded {type(item).__name__}; expected a mapping like {{'x': tensor}}")


class _PermutationBatches(Sampler[list[int]]):
    """Batches of indices of one epoch's permutation, from ``start`` on."""

    def __init__(self, n: int, batch_size: int, shuffle: bool, drop_last: bool, seed: int, start: int):
        self.n, self.batch_size, self.shuffle, self.drop_last = n, batch_size, shuffle, drop_last
        self.seed, self.start = seed, start

    def __len__(self) -> int:
        full, rest = divmod(self.n, self.batch_size)
        return max(full + (0 if self.drop_last or not rest else 1) - self.start, 0)

    def __iter__(self) -> Iterator[list[int]]:
        order = (
            torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed))
            if self.shuffle
            else torch.arange(self.n)
        )
        total = len(self) + self.start
        for b in range(self.start, total):
            yield order[b * self.batch_size : (b + 1) * self.batch_size].tolist()


class TrainBatches:
    """Training batches of a data source's ``train`` split.

    Parameters:
        data (`Any`): a mapping of tensors, a ``Dataset`` or an ``IterableDataset``.
        config (`DataConfig`): batch size, subset, shuffling, workers.
        seed (`int`): the run's data seed.
        device (`torch.device`): where batches are delivered.
    """

    def __init__(self, data: Any, config: DataConfig, seed: int, device: torch.device):
        self.config, self.seed, self.device = config, seed, device
        self.tensors: Batch | None = None
        self.dataset: Any = None
        if isinstance(data, Mapping):
            tensors = {k: torch.as_tensor(v) for k, v in data.items()}
            lengths = {len(v) for v in tensors.values()}
            if len(lengths) != 1:
                raise ValueError(f"the train tensors have different lengths: {sorted(lengths)}")
            if config.subset is not None:
                keep = torch.randperm(lengths.pop(), generator=torch.Generator().manual_seed(seed))[: config.subset]
                tensors = {k: v[keep.sort().values] for k, v in tensors.items()}
            self.tensors = {k: v.to(device) for k, v in tensors.items()}
            self.num_examples: int | None = len(next(iter(self.tensors.values())))
        elif isinstance(data, IterableDataset):
            self.dataset = data
            self.num_examples = config.subset
        elif isinstance(data, Dataset):
            if config.subset is not None:
                keep = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[: config.subset]
                data = Subset(data, keep.sort().values.tolist())
            self.dataset = data
            self.num_examples = len(data)
        else:
            raise TypeError(f"unsupported train data of type {type(data).__name__}")

    @property
    def steps_per_epoch(self) -> int | None:
        """Batches per epoch; None for an endless stream."""
        if self.num_examples is None:
            return None
        full, rest = divmod(self.num_examples, self.config.batch_size)
        return full + (0 if self.config.drop_last or not rest else 1)

    def epoch(self, stage: int, epoch: int, start: int = 0) -> Iterator[Batch]:
        """The batches of one epoch, beginning with batch number ``start``."""
        seed = epoch_seed(self.seed, stage, epoch)
        if self.tensors is not None:
            yield from self._fast(seed, start)
        elif isinstance(self.dataset, IterableDataset):
            yield from self._stream(start)
        else:
            yield from self._loader(seed, start)

    def _fast(self, seed: int, start: int) -> Iterator[Batch]:
        assert self.tensors is not None and self.num_examples is not None
        size = self.config.batch_size
        if self.config.shuffle:
            order = torch.randperm(self.num_examples, generator=torch.Generator().manual_seed(seed)).to(self.device)
        else:
            order = None
        for b in range(start, self.steps_per_epoch or 0):
            if order is None:
                yield {k: v[b * size : (b + 1) * size] for k, v in self.tensors.items()}
            else:
                index = order[b * size : (b + 1) * size]
                yield {k: v[index] for k, v in self.tensors.items()}

    def _loader_kwargs(self) -> dict[str, Any]:
        return {
            "num_workers": self.config.num_workers,
            "pin_memory": self.config.pin_memory and self.device.type == "cuda",
            "persistent_workers": False,
        }

    def _loader(self, seed: int, start: int) -> Iterator[Batch]:
        sampler = _PermutationBatches(
            len(self.dataset), self.config.batch_size, self.config.shuffle, self.config.drop_last, seed, start
        )
        loader = DataLoader(self.dataset, batch_sampler=sampler, generator=torch.Generator().manual_seed(seed),
                            **self._loader_kwargs())
        for item in loader:
            yield {k: v.to(self.device, non_blocking=True) for k, v in _as_batch(item).items()}

    def _stream(self, start: int) -> Iterator[Batch]:
        loader = DataLoader(self.dataset, batch_size=self.config.batch_size, **self._loader_kwargs())
        batches: Iterator[Any] = iter(loader)
        if self.steps_per_epoch is not None:
            batches = itertools.islice(batches, self.steps_per_epoch)
        for item in itertools.islice(batches, start, None):
            yield {k: v.to(self.device, non_blocking=True) for k, v in _as_batch(item).items()}


def validation_batches(data: Any, batch_size: int, device: torch.device) -> list[Batch] | None:
    """The validation split as a list of device batches (None when there is no split).

    Validation sets are finite and small enough to hold; an ``IterableDataset``
    is read to its end.
    """
    if data is None:
        return None
    if isinstance(data, Mapping):
        tensors = {k: torch.as_tensor(v).to(device) for k, v in data.items()}
        n = len(next(iter(tensors.values())))
        return [{k: v[i : i + batch_size] for k, v in tensors.items()} for i in range(0, n, batch_size)]
    loader = DataLoader(data, batch_size=batch_size, shuffle=False)
    return [{k: v.to(device) for k, v in _as_batch(item).items()} for item in loader]
