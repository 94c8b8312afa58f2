"""The hot path's pieces: the fused non-finite check, held step statistics, epoch batches."""

from __future__ import annotations

import math

import pytest
import torch

from vaeforge.api import MetricSink
from vaeforge.config import DataConfig
from vaeforge.trainer import batches as batches_module
from vaeforge.trainer.batches import TrainBatches
from vaeforge.trainer.numerics import NonFiniteCheck
from vaeforge.trainer.step_stats import TrainStepStats

CPU = torch.device("cpu")


def test_check_flags_nothing_and_changes_nothing_on_finite_tensors():
    tensors = [torch.randn(5, 3), torch.randn(7), torch.tensor(2.5), torch.randn(4, dtype=torch.bfloat16)]
    copies = [t.clone() for t in tensors]
    check = NonFiniteCheck(CPU)
    assert check(tensors).item() == 0.0
    assert all(torch.equal(t, c) for t, c in zip(tensors, copies))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("where", [0, 1, 2])
def test_check_flags_a_non_finite_value_in_any_tensor_until_reset(bad, where):
    tensors = [torch.randn(5, 3), torch.randn(4, dtype=torch.bfloat16), torch.tensor(1.0)]
    tensors[where].view(-1)[-1] = bad
    check = NonFiniteCheck(CPU)
    assert check(tensors).item() == 1.0
    tensors[where].view(-1)[-1] = 0.0
    assert check(tensors).item() == 1.0  # the flag stays raised: a skipped step must reset it
    check.reset()
    assert check(tensors).item() == 0.0


def test_check_reads_the_values_of_sparse_gradients():
    sparse = torch.sparse_coo_tensor(torch.tensor([[0, 2]]), torch.tensor([1.0, float("nan")]), (4,),
                                     check_invariants=True)
    check = NonFiniteCheck(CPU)
    assert check([torch.ones(3), sparse]).item() == 1.0


def test_held_steps_give_the_same_means_as_logging_every_step():
    steps = [[torch.tensor(float(i)), torch.tensor(float(i * i))] for i in range(7)]
    held, direct = MetricSink(), MetricSink()
    stats = TrainStepStats(held, max_rows=3)  # flushes on its own after 3 steps
    for values in steps:
        stats.add(["train/loss", "train/kl"], values)
        direct.log_many(["train/loss", "train/kl"], torch.stack(values))
    stats.flush()
    assert held.compute() == pytest.approx(direct.compute())
    assert held.compute()["train/kl"] == pytest.approx(sum(i * i for i in range(7)) / 7)


def test_new_names_flush_the_steps_held_under_the_old_ones():
    sink = MetricSink()
    stats = TrainStepStats(sink)
    stats.add(["train/loss"], [torch.tensor(1.0)])
    stats.add(["train/loss", "train/extra"], [torch.tensor(3.0), torch.tensor(5.0)])
    stats.flush()
    assert sink.compute() == {"train/loss": 2.0, "train/extra": 5.0}


@pytest.mark.parametrize("world", [(0, 1), (1, 2)])
def test_an_epoch_copy_yields_the_batches_of_a_per_batch_gather(monkeypatch, world):
    data = {"x": torch.randn(103, 4), "y": torch.arange(103)}
    config = DataConfig(name="memory", batch_size=16)
    copied = list(TrainBatches(data, config, seed=3, device=CPU, shard=world).epoch(0, 2, start=1))
    monkeypatch.setattr(batches_module, "EPOCH_COPY_BYTES", 0)  # too big to copy: gather every batch
    gathered = list(TrainBatches(data, config, seed=3, device=CPU, shard=world).epoch(0, 2, start=1))
    assert len(copied) == len(gathered) == math.ceil(103 // world[1] / 16) - 1
    for a, b in zip(copied, gathered):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
