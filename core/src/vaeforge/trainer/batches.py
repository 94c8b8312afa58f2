"""Batches for the loop: an in-memory fast path, a DataLoader path and streams.

Every path is deterministic in ``(seed, stage, epoch)`` and can start in the
middle of an epoch, which is what makes resuming exact:

- a mapping of tensors is moved to the device once and indexed there by a
  per-epoch permutation (no per-sample collate): data up to
  :data:`EPOCH_COPY_BYTES` is gathered into a permuted copy once per epoch and
  every batch is a view of it, larger data is gathered batch by batch;
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

EPOCH_COPY_BYTES = 256 * 2**20
"""In-memory training data up to this size is permuted once per epoch and batched as views."""


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


class _OrderBatches(Sampler[list[int]]):
    """Consecutive batches of a fixed index order, from batch ``start`` on."""

    def __init__(self, order: Tensor, batch_size: int, steps: int, start: int):
        self.order, self.batch_size, self.steps, self.start = order, batch_size, steps, start

    def __len__(self) -> int:
        return max(self.steps - self.start, 0)

    def __iter__(self) -> Iterator[list[int]]:
        for b in range(self.start, self.steps):
            yield self.order[b * self.batch_size : (b + 1) * self.batch_size].tolist()


class TrainBatches:
    """Training batches of a data source's ``train`` split.

    Parameters:
        data (`Any`): a mapping of tensors, a ``Dataset`` or an ``IterableDataset``.
        config (`DataConfig`): batch size, subset, shuffling, workers.
        seed (`int`): the run's data seed.
        device (`torch.device`): where batches are delivered.
        shard (`tuple[int, int]`, *optional*): ``(rank, world_size)``: this process trains every
            ``world_size``-th example of each epoch's permutation, starting at ``rank`` (equal shards;
            the remainder of the permutation is dropped).
    """

    def __init__(self, data: Any, config: DataConfig, seed: int, device: torch.device,
                 shard: tuple[int, int] = (0, 1)):
        self.config, self.seed, self.device = config, seed, device
        self.rank, self.world_size = shard
        self.tensors: Batch | None = None
        self.nbytes = 0  # of the in-memory tensors
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
            self.nbytes = sum(v.numel() * v.element_size() for v in self.tensors.values())
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
    def shard_size(self) -> int | None:
        """Examples this process trains per epoch (all of them in a single-process run)."""
        if self.num_examples is None:
            return None
        return self.num_examples // self.world_size if self.world_size > 1 else self.num_examples

    @property
    def steps_per_epoch(self) -> int | None:
        """Batches per epoch; None for an endless stream."""
        if self.shard_size is None:
            return None
        full, rest = divmod(self.shard_size, self.config.batch_size)
        return full + (0 if self.config.drop_last or not rest else 1)

    def _order(self, seed: int) -> Tensor:
        """This process's example indices for the epoch seeded by ``seed``."""
        assert self.num_examples is not None and self.shard_size is not None
        if self.config.shuffle:
            order = torch.randperm(self.num_examples, generator=torch.Generator().manual_seed(seed))
        else:
            order = torch.arange(self.num_examples)
        return order[self.rank :: self.world_size][: self.shard_size] if self.world_size > 1 else order

    def epoch(self, stage: int, epoch: int, start: int = 0) -> Iterator[Batch]:
        """The batches of one epoch, beginning with batch number ``start``."""
        seed = epoch_seed(self.seed, stage, epoch)
        if self.tensors is not None:
            yield from self._fast(seed, start)
        elif isinstance(self.dataset, IterableDataset):
            yield from self._stream(seed, start)
        else:
            yield from self._loader(seed, start)

    def _fast(self, seed: int, start: int) -> Iterator[Batch]:
        assert self.tensors is not None
        size = self.config.batch_size
        contiguous = not self.config.shuffle and self.world_size == 1
        order = None if contiguous else self._order(seed).to(self.device)
        tensors = self.tensors
        if order is not None and self.nbytes <= EPOCH_COPY_BYTES:
            # one gather per tensor per epoch; every batch is then a view (no per-step gather)
            tensors, order = {k: v[order] for k, v in tensors.items()}, None
        for b in range(start, self.steps_per_epoch or 0):
            if order is None:
                yield {k: v[b * size : (b + 1) * size] for k, v in tensors.items()}
            else:
                index = order[b * size : (b + 1) * size]
                yield {k: v[index] for k, v in tensors.items()}

    def _loader_kwargs(self) -> dict[str, Any]:
        return {
            "num_workers": self.config.num_workers,
            "pin_memory": self.config.pin_memory and self.device.type == "cuda",
            "persistent_workers": False,
        }

    def _loader(self, seed: int, start: int) -> Iterator[Batch]:
        sampler = _OrderBatches(self._order(seed), self.config.batch_size, self.steps_per_epoch or 0, start)
        loader = DataLoader(self.dataset, batch_sampler=sampler, generator=torch.Generator().manual_seed(seed),
                            **self._loader_kwargs())
        for item in loader:
            yield {k: v.to(self.device, non_blocking=True) for k, v in _as_batch(item).items()}

    def _stream(self, seed: int, start: int) -> Iterator[Batch]:
        # a generator of its own: the loader draws its workers' base seed from it, not from the
        # global generator, whose state would otherwise depend on where a resumed run started
        loader = DataLoader(self.dataset, batch_size=self.config.batch_size,
                            generator=torch.Generator().manual_seed(seed), **self._loader_kwargs())
        batches: Iterator[Any] = iter(loader)
        if self.world_size > 1:  # every rank reads the same stream and keeps every world_size-th batch
            batches = itertools.islice(batches, self.rank, None, self.world_size)
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
