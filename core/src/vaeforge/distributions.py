"""Posteriors and likelihoods shared by models.

A posterior is q(z | x): it offers ``sample()`` (reparameterised),
``mode()`` and ``kl(prior=None)``, which returns one KL value per example
(summed over latent dimensions). A likelihood turns decoder output into a
per-example negative log-likelihood and into data-space samples.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


class DiagonalGaussian:
    """A Gaussian with diagonal covariance, parameterised by mean and log-variance.

    Parameters:
        mean (`Tensor`): ``[batch, latent]`` means.
        logvar (`Tensor`): ``[batch, latent]`` log-variances, clamped to ``[-30, 20]``.
    """

    def __init__(self, mean: Tensor, logvar: Tensor):
        self.mean = mean
        self.logvar = logvar.clamp(-30.0, 20.0)

    @property
    def std(self) -> Tensor:
        return torch.exp(0.5 * self.logvar)

    def sample(self, temperature: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
        """``mean + temperature * std * eps`` (differentiable)."""
        eps = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + temperature * self.std * eps

    def mode(self) -> Tensor:
        """The mean."""
        return self.mean

    def kl(self, prior: DiagonalGaussian | None = None) -> Tensor:
        """KL(q || prior) per example; the prior defaults to a standard normal."""
        if prior is None:
            return 0.5 * torch.sum(self.mean.pow(2) + self.logvar.exp() - 1.0 - self.logvar, dim=-1)
        var_ratio = (self.logvar - prior.logvar).exp()
        diff = (self.mean - prior.mean).pow(2) / prior.logvar.exp()
        return 0.5 * torch.sum(var_ratio + diff - 1.0 - (self.logvar - prior.logvar), dim=-1)


def _sum_except_batch(x: Tensor) -> Tensor:
    return x.reshape(x.shape[0], -1).sum(dim=1)


def bernoulli_nll(logits: Tensor, target: Tensor) -> Tensor:
    """Per-example Bernoulli negative log-likelihood (targets in [0, 1])."""
    return _sum_except_batch(F.binary_cross_entropy_with_logits(logits, target, reduction="none"))


def gaussian_nll(mean: Tensor, target: Tensor, logvar: float = 0.0) -> Tensor:
    """Per-example Gaussian negative log-likelihood with a fixed variance ``exp(logvar)``."""
    squared = (mean - target).pow(2) * math.exp(-logvar)
    return 0.5 * _sum_except_batch(squared + logvar + math.log(2 * math.pi))


def categorical_nll(logits: Tensor, target: Tensor) -> Tensor:
    """Per-example categorical negative log-likelihood; ``logits`` is ``[..., classes]``, ``target`` integer."""
    flat = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1).long(), reduction="none")
    return flat.reshape(target.shape[0], -1).sum(dim=1)


def decode_sample(output: Tensor, likelihood: str, generator: torch.Generator | None = None) -> Tensor:
    """Turn decoder output into data-space samples.

    ``bernoulli``: probabilities thresholded at a draw (a Bernoulli sample);
    ``gaussian``: the mean; ``categorical``: the argmax class.
    """
    if likelihood == "bernoulli":
        probs = torch.sigmoid(output)
        return torch.bernoulli(probs, generator=generator)
    if likelihood == "gaussian":
        return output
    if likelihood == "categorical":
        return output.argmax(dim=-1)
    raise ValueError(f"unknown likelihood {likelihood!r}")
