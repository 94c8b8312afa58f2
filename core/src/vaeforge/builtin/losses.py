"""The core's loss terms: reconstruction under three likelihoods, and the KL divergence.

Each term is per example (summed over data or latent dimensions) and
averaged over the batch; see :class:`vaeforge.api.LossTerm`.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from attrs import field, frozen
from attrs.validators import ge
from torch import Tensor

from vaeforge.api import Context, ModelOutput
from vaeforge.distributions import bernoulli_nll, categorical_nll, gaussian_nll


class BCERecon:
    """Bernoulli reconstruction: binary cross-entropy of the decoder logits against ``x`` in [0, 1]."""

    def __init__(self, config: None = None):
        del config

    def __call__(self, out: ModelOutput, batch: Mapping[str, Tensor], ctx: Context) -> Tensor:
        return bernoulli_nll(out.recon, batch["x"].to(out.recon.dtype)).mean()


@frozen(kw_only=True)
class MSEReconConfig:
    """Gaussian reconstruction settings.

    :param logvar: the fixed log-variance of the Gaussian likelihood; with 0 the term is
        half the summed squared error plus a constant.
    :param plain: report the plain summed squared error instead of the negative log-likelihood.
    """

    logvar: float = 0.0
    plain: bool = True


class MSERecon:
    """Gaussian reconstruction: squared error of the decoder means against ``x``."""

    def __init__(self, config: MSEReconConfig):
        self.config = config

    def __call__(self, out: ModelOutput, batch: Mapping[str, Tensor], ctx: Context) -> Tensor:
        target = batch["x"].to(out.recon.dtype)
        if self.config.plain:
            return (out.recon - target).pow(2).reshape(target.shape[0], -1).sum(dim=1).mean()
        return gaussian_nll(out.recon, target, self.config.logvar).mean()


class CategoricalRecon:
    """Categorical reconstruction: cross-entropy of ``[..., classes]`` logits against integer ``x``."""

    def __init__(self, config: None = None):
        del config

    def __call__(self, out: ModelOutput, batch: Mapping[str, Tensor], ctx: Context) -> Tensor:
        return categorical_nll(out.recon, batch["x"]).mean()


@frozen(kw_only=True)
class KLConfig:
    """KL divergence settings.

    :param free_bits: nats per example below which the KL is not penalised (0 disables).
    """

    free_bits: float = field(default=0.0, validator=ge(0.0))


class KLDivergence:
    """KL(q(z|x) || p(z)) per example, averaged over the batch; weight it with a schedule for beta."""

    def __init__(self, config: KLConfig):
        self.config = config

    def __call__(self, out: ModelOutput, batch: Mapping[str, Tensor], ctx: Context) -> Tensor:
        kl = out.posterior.kl().mean()
        if self.config.free_bits > 0:
            return torch.clamp(kl, min=self.config.free_bits)
        return kl
