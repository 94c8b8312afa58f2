"""``ternary_coverage``: prior coverage and exact reconstruction of the ternary operations.

Coverage at N is the fraction of the 19,683 operations that appear at least
once among N operations the model generates from its prior (``model.sample``:
z drawn from the prior, decoded, argmax per position). It is reported beside
the ideal for N iid uniform draws, ``1 - (1 - 1/19683)**N`` (99.38% at 100k).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from attrs import field, frozen
from attrs.validators import deep_iterable, ge, instance_of, min_len
from torch import Tensor, nn

from vaeforge.api import Context, DataSplits
from vaeforge_ternary.ops import NUM_OPS, NUM_TRITS, all_operations, ideal_coverage, op_index


def _positive_sizes(instance: object, attribute: object, value: list[int]) -> None:
    if any(n < 1 for n in value):
        raise ValueError(f"sample sizes must be at least 1, got {value}")


@frozen(kw_only=True)
class CoverageConfig:
    """What the coverage metric measures.

    :param samples: the numbers of prior samples N to report coverage at; the samples are
        nested (coverage at 100k counts the first 100k of the 1M drawn for coverage at 1M).
    :param chunk_size: samples decoded per call of ``model.sample``.
    :param seed: seed of the prior samples; fixed, so every evaluation decodes the same z.
    :param recon: also report exact-match reconstruction accuracy over all 19,683 operations
        (posterior mean decoded by argmax; every position must match).
    :param ideal: also report the ideal coverage of iid uniform draws at each N.
    """

    samples: list[int] = field(
        factory=lambda: [100_000, 1_000_000],
        validator=[min_len(1), deep_iterable(instance_of(int)), _positive_sizes],
    )
    chunk_size: int = field(default=16_384, validator=ge(1))
    seed: int = 1234
    recon: bool = True
    ideal: bool = True


def sample_size_name(n: int) -> str:
    """``100000`` -> ``"100k"``, ``1000000`` -> ``"1M"``, ``1500`` -> ``"1500"``."""
    for unit, suffix in ((1_000_000, "M"), (1_000, "k")):
        if n % unit == 0:
            return f"{n // unit}{suffix}"
    return str(n)


@torch.no_grad()
def generated_counts(model: nn.Module, n: int, chunk_size: int, generator: torch.Generator,
                     checkpoints: list[int] | None = None) -> dict[int, Tensor]:
    """How often each operation index occurs among ``n`` operations from ``model.sample``.

    Returns one ``[19683]`` count vector per entry of ``checkpoints`` (default ``[n]``),
    each counting the first that many samples. Counting stays on the model's device.
    """
    wanted = sorted(set(checkpoints or [n]))
    counts: dict[int, Tensor] = {}
    running: Tensor | None = None
    done = 0
    while done < n:
        size = min(chunk_size, n - done)
        for stop in wanted:  # a checkpoint inside this chunk: count up to it exactly
            if done < stop < done + size:
                size = stop - done
                break
        ops = model.sample(size, generator=generator)
        if ops.shape != (size, NUM_TRITS):
            raise ValueError(f"model.sample({size}) returned shape {tuple(ops.shape)}; expected ({size}, {NUM_TRITS})")
        chunk = torch.bincount(op_index(ops), minlength=NUM_OPS)
        running = chunk if running is None else running + chunk
        done += size
        if done in wanted:
            counts[done] = running.clone()
    return counts


@torch.no_grad()
def exact_reconstruction(model: nn.Module, batch_size: int = 4096) -> dict[str, float]:
    """Fraction of the 19,683 operations reconstructed exactly (all 9 positions) in eval mode.

    ``recon_exact`` scores ``out.recon``; every ``extras`` tensor named ``recon_<branch>``
    with the same shape (a dual VAE's second decoder) is scored as ``recon_exact_<branch>``.
    """
    device = next(model.parameters()).device
    ops = all_operations(device)
    hits: dict[str, Tensor] = {}
    for start in range(0, NUM_OPS, batch_size):
        x = ops[start : start + batch_size]
        out = model({"x": x})
        logits = {"recon_exact": out.recon}
        logits.update({f"recon_exact_{k.removeprefix('recon_')}": v for k, v in out.extras.items()
                       if k.startswith("recon_") and isinstance(v, Tensor) and v.shape == out.recon.shape})
        for name, value in logits.items():
            correct = (value.argmax(dim=-1) == x).all(dim=-1).sum()
            hits[name] = hits[name] + correct if name in hits else correct
    return {name: float(value) / NUM_OPS for name, value in hits.items()}


class TernaryCoverage:
    """Coverage of the 19,683 operations by prior samples, and exact reconstruction.

    Logs ``coverage_<N>`` (e.g. ``val/coverage_100k``), ``coverage_ideal_<N>`` and
    ``recon_exact`` (plus ``recon_exact_<branch>`` for models with a second decoder).

    Parameters:
        config (`CoverageConfig`): sample sizes, chunking, seed.
    """

    def __init__(self, config: CoverageConfig):
        self.config = config

    def __call__(self, model: nn.Module, data: DataSplits, ctx: Context) -> Mapping[str, float]:
        device = next(model.parameters()).device
        generator = torch.Generator(device=device).manual_seed(self.config.seed)
        sizes = sorted(set(self.config.samples))
        counts = generated_counts(model, sizes[-1], self.config.chunk_size, generator, checkpoints=sizes)
        results: dict[str, float] = {}
        covered = torch.stack([(counts[n] > 0).sum() for n in sizes]).tolist()  # one host transfer
        for n, hit in zip(sizes, covered):
            name = sample_size_name(n)
            results[f"coverage_{name}"] = hit / NUM_OPS
            if self.config.ideal:
                results[f"coverage_ideal_{name}"] = ideal_coverage(n)
        if self.config.recon:
            results.update(exact_reconstruction(model))
        return results
