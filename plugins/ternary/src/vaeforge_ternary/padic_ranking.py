"""``padic_ranking``: a triplet loss that orders latent distances like 3-adic distances.

The 3-adic distance between operations with indices ``i != j`` is
``3 ** -v(i - j)``, where ``v`` counts how many trailing base-3 digits the
indices share, i.e. how many leading positions of the two truth tables agree.
For triplets ``(anchor, p, n)`` drawn from the batch with
``d3(anchor, p) < d3(anchor, n)`` the loss is
``relu(|mu_anchor - mu_p| - |mu_anchor - mu_n| + margin)`` on the posterior
means, averaged over the triplets that are ordered (ties and repeats of the anchor
are skipped).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from attrs import field, frozen
from attrs.validators import ge, gt, in_
from torch import Tensor

from vaeforge.api import Context, ModelOutput
from vaeforge_ternary.ops import NUM_TRITS, op_index


@frozen(kw_only=True)
class PadicRankingConfig:
    """Triplet sampling and margin.

    :param triplets: triplets drawn per batch.
    :param margin: the margin of the triplet hinge, in latent units.
    :param branch: whose posterior means to rank: ``a`` (``out.posterior``) or ``b``
        (``out.extras["posterior_b"]`` of a dual VAE).
    """

    triplets: int = field(default=512, validator=ge(1))
    margin: float = field(default=0.1, validator=gt(0.0))
    branch: str = field(default="a", validator=in_(["a", "b"]))


def valuation3(diff: Tensor) -> Tensor:
    """The 3-adic valuation of nonzero integers (trailing base-3 zeros); ``NUM_TRITS`` for 0."""
    v = torch.zeros_like(diff)
    rest = diff.abs()
    for _ in range(NUM_TRITS):
        divisible = (rest % 3 == 0) & (rest != 0)
        v = v + divisible.long()
        rest = torch.where(divisible, rest // 3, rest)
    return torch.where(diff == 0, torch.full_like(v, NUM_TRITS), v)


class PadicRanking:
    """Triplet hinge on latent distances, ordered by 3-adic distance between operation indices.

    Parameters:
        config (`PadicRankingConfig`): triplets per batch, margin, branch.
    """

    def __init__(self, config: PadicRankingConfig):
        self.config = config

    def __call__(self, out: ModelOutput, batch: Mapping[str, Tensor], ctx: Context) -> Tensor:
        posterior = out.posterior if self.config.branch == "a" else out.extras["posterior_b"]
        mean, index = posterior.mean, op_index(batch["x"])
        n, k = index.shape[0], self.config.triplets
        anchor, first, second = (torch.randint(n, (k,), device=index.device) for _ in range(3))
        v_first = valuation3(index[anchor] - index[first])
        v_second = valuation3(index[anchor] - index[second])
        # the closer one (higher valuation) is the positive
        swap = v_second > v_first
        positive = torch.where(swap, second, first)
        negative = torch.where(swap, first, second)
        distinct = (index[first] != index[anchor]) & (index[second] != index[anchor])
        ordered = ((v_first != v_second) & distinct).float()
        d_pos = (mean[anchor] - mean[positive]).norm(dim=-1)
        d_neg = (mean[anchor] - mean[negative]).norm(dim=-1)
        hinge = torch.relu(d_pos - d_neg + self.config.margin) * ordered
        return hinge.sum() / ordered.sum().clamp_min(1.0)
