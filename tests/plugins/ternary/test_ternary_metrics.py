"""The coverage metric and exact reconstruction, on hand-built models with known answers."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vaeforge.api import Context, ModelOutput
from vaeforge_ternary.metrics import CoverageConfig, TernaryCoverage, exact_reconstruction, sample_size_name
from vaeforge_ternary.ops import NUM_OPS, all_operations, ideal_coverage, powers

TERCILE = 0.4307272992954576  # the standard normal's 2/3 quantile: P(|z| < t) = 1/3


class Sequential(nn.Module):
    """Generates operation indices 0, 1, 2, ... in order (wrapping), whatever the generator."""

    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))
        self.next = 0

    def sample(self, n, generator=None):
        index = (torch.arange(n) + self.next) % NUM_OPS
        self.next += n
        return (index.unsqueeze(1) // powers()) % 3


class Terciles(nn.Module):
    """Decodes position i from z_i by the standard normal's terciles: every operation has prior mass 3**-9.

    Positions from ``free`` on are pinned to class 1, leaving exactly ``3**free`` reachable operations.
    """

    def __init__(self, free: int = 9):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))
        self.free = free

    def decode(self, z):
        classes = (z > -TERCILE).long() + (z > TERCILE).long()
        classes[:, self.free :] = 1
        return F.one_hot(classes, 3).float()

    def sample(self, n, generator=None):
        return self.decode(torch.randn(n, 9, generator=generator)).argmax(-1)


def test_coverage_counts_exactly_across_chunks_and_nested_sizes():
    metric = TernaryCoverage(CoverageConfig(samples=[10_000, 30_000], chunk_size=4_096, recon=False))
    result = metric(Sequential(), None, Context())
    assert result["coverage_10k"] == 10_000 / NUM_OPS
    assert result["coverage_30k"] == 1.0
    assert result["coverage_ideal_10k"] == ideal_coverage(10_000)


@pytest.mark.parametrize("free", [0, 3, 5])
def test_coverage_of_a_decoder_with_known_reachable_set(free):
    metric = TernaryCoverage(CoverageConfig(samples=[20_000], recon=False, ideal=False))
    assert metric(Terciles(free), None, Context()) == {"coverage_20k": 3**free / NUM_OPS}


@pytest.mark.slow
def test_a_uniform_generator_matches_the_ideal_coverage():
    result = TernaryCoverage(CoverageConfig(recon=False))(Terciles(), None, Context())
    assert result["coverage_1M"] == 1.0
    spread = math.sqrt(NUM_OPS * ideal_coverage(100_000) * (1 - ideal_coverage(100_000))) / NUM_OPS
    assert abs(result["coverage_100k"] - ideal_coverage(100_000)) < 5 * spread


class Reconstructor(nn.Module):
    """Reconstructs every operation but corrupts position 0 of the first ``wrong`` ones in ``recon``."""

    def __init__(self, wrong: int):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))
        self.wrong = wrong

    def forward(self, batch):
        x = batch["x"]
        perfect = F.one_hot(x, 3).float()
        damaged = perfect.clone()
        bad = (x * powers()).sum(-1) < self.wrong
        damaged[bad, 0] = F.one_hot((x[bad, 0] + 1) % 3, 3).float()
        return ModelOutput(recon=damaged, posterior=None, z=x.float(), extras={"recon_b": perfect, "recon_x": 1})


def test_exact_reconstruction_scores_each_decoder():
    assert exact_reconstruction(Reconstructor(1_000), batch_size=5_000) == {
        "recon_exact": (NUM_OPS - 1_000) / NUM_OPS,
        "recon_exact_b": 1.0,
    }


def test_sample_size_names():
    assert [sample_size_name(n) for n in (100_000, 1_000_000, 1_500, 2_000)] == ["100k", "1M", "1500", "2k"]


def test_all_operations_decode_through_terciles_once():
    z = torch.tensor([-1.0, 0.0, 1.0])[all_operations()]
    assert len(torch.unique(Terciles().decode(z).argmax(-1), dim=0)) == NUM_OPS
