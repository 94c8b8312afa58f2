"""torchrun / DDP glue: gloo on CPU, nccl on CUDA.

``torchrun --nproc-per-node N -m vaeforge train ...`` starts N processes with
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` set. Every process then trains its
shard of each epoch's permutation with the model wrapped in
``DistributedDataParallel``; all ranks agree on whether a step was finite
(an all-reduce of the finiteness flag), so a NaN on one rank makes every rank
skip the step instead of hanging. Only rank 0 builds loggers and writes
checkpoints; every rank validates on the whole validation split, so
callbacks decide identically everywhere.
"""

from __future__ import annotations

import os
from datetime import timedelta

import attrs
import torch
import torch.distributed as dist


@attrs.frozen
class Distributed:
    """This process's place in a multi-process run.

    :param rank: the global rank, from 0.
    :param world_size: how many processes train.
    :param local_rank: the rank on this machine (selects the CUDA device).
    """

    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        """True on rank 0, the only rank that logs and writes checkpoints."""
        return self.rank == 0

    def device(self) -> torch.device:
        """``cuda:<local_rank>`` when CUDA is available, else the CPU."""
        return torch.device("cuda", self.local_rank) if torch.cuda.is_available() else torch.device("cpu")

    def all_true(self, flag: torch.Tensor) -> bool:
        """True when ``flag`` is true on every rank (one all-reduce; the step's one host sync)."""
        value = flag.to(torch.int32).reshape(1)
        dist.all_reduce(value, op=dist.ReduceOp.MIN)
        return bool(value.item())

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """The element-wise mean of ``values`` over all ranks."""
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        return values / self.world_size

    def barrier(self) -> None:
        """Wait until every rank arrives here."""
        dist.barrier()


def from_environment(timeout_s: float = 300.0) -> Distributed | None:
    """Join the process group torchrun describes; None for a single-process run."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return None
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
    return Distributed(rank=rank, world_size=world_size, local_rank=local_rank)


def shutdown() -> None:
    """Leave the process group, if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
