"""Loss composition: weighted terms -> :class:`~vaeforge.api.LossResult`, each term logged."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import torch
from torch import Tensor

from vaeforge.api import Context, LossResult, ModelOutput

WeightFn = Callable[[int, int, "int | None"], float]


@attrs.define
class WeightedTerm:
    """One term of the objective.

    :param name: the name its metrics are logged under (the registered name, suffixed
        with ``_2``, ``_3`` when a run uses a term twice).
    :param term: the loss term.
    :param weight: a constant or a schedule ``(step, epoch, steps_per_epoch) -> float``.
    """

    name: str
    term: Any
    weight: float | WeightFn

    @property
    def scheduled(self) -> bool:
        return callable(self.weight)


def unique_names(names: Sequence[str]) -> list[str]:
    """``['kl', 'recon', 'kl']`` -> ``['kl', 'recon', 'kl_2']``."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return out


class LossComposer:
    """Sums weighted terms; :meth:`log` records every term's unweighted value without host syncs."""

    def __init__(self, terms: Sequence[WeightedTerm]):
        self.terms = list(terms)

    def update_weights(self, ctx: Context) -> None:
        """Evaluate schedules for the current step into ``ctx.weights`` (scaled by ``ctx.weight_scales``)."""
        for t in self.terms:
            base = t.weight(ctx.step, ctx.epoch, ctx.steps_per_epoch) if t.scheduled else t.weight
            ctx.weights[t.name] = base * ctx.weight_scales.get(t.name, 1.0)

    def __call__(self, out: ModelOutput, batch: Mapping[str, Tensor], ctx: Context) -> LossResult:
        values: dict[str, Tensor] = {}
        total: Tensor | None = None
        for t in self.terms:
            value = t.term(out, batch, ctx)
            if isinstance(value, Mapping):
                for key, sub in value.items():
                    values[f"{t.name}/{key}"] = sub
                value = torch.stack([v.float() for v in value.values()]).sum()
            values[t.name] = value
            weight = ctx.weights[t.name]
            weighted = value if weight == 1.0 else value * weight  # no op for the common unit weight
            total = weighted if total is None else total + weighted
        assert total is not None, "a run has at least one loss term"
        return LossResult(total=total, terms=values)

    @staticmethod
    def stack(result: LossResult) -> Tensor:
        """``[total, *terms]`` detached as one float32 vector (one device op)."""
        parts = [result.total, *result.terms.values()]
        with torch.no_grad():
            return torch.stack([p if p.dtype == torch.float32 else p.float() for p in parts])

    @staticmethod
    def names(result: LossResult, split: str) -> list[str]:
        """Metric names matching :meth:`stack`: ``<split>/loss``, then ``<split>/<term>``."""
        return [f"{split}/loss", *(f"{split}/{n}" for n in result.terms)]

    def log(self, result: LossResult, ctx: Context) -> None:
        """Log the total as ``<split>/loss`` and every term as ``<split>/<term>``."""
        ctx.metrics.log_many(self.names(result, ctx.split), self.stack(result))
