"""Building blocks for model plugins: a VAE base class, MLPs and the data <-> network adapter.

Every VAE over flat features repeats the same chores: choose a likelihood
from the data kind, one-hot encode categorical inputs, flatten for the
encoder and reshape the decoder output back to the data's shape (plus a class
axis for categorical data). :class:`DataAdapter` does them once, so a model
file holds only what is particular to that model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from vaeforge.api import DataInfo, ModelOutput
from vaeforge.distributions import decode_sample

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh, "leaky_relu": nn.LeakyReLU,
}
"""Activation names a model config may use (``leaky_relu`` has torch's default slope, 0.01)."""

LIKELIHOODS = ("auto", "bernoulli", "gaussian", "categorical")
"""Likelihood names a model config may use; ``auto`` follows the data kind."""

_LIKELIHOOD_OF_KIND = {"binary": "bernoulli", "continuous": "gaussian", "categorical": "categorical"}


def mlp(sizes: list[int], activation: str = "relu", *, last_activation: bool = False) -> nn.Sequential:
    """Linear layers of the given sizes with ``activation`` between them (and after the last, if asked)."""
    layers: list[nn.Module] = []
    for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(fan_in, fan_out))
        if last_activation or index < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class DataAdapter:
    """Maps a batch's ``x`` to flat network inputs and flat network outputs back to data shape.

    Parameters:
        data_info (`DataInfo`): the data's shape, kind and class count.
        likelihood (`str`): one of :data:`LIKELIHOODS`; ``auto`` picks Bernoulli for binary,
            Gaussian for continuous and categorical for categorical data.

    Raises:
        ValueError: a categorical likelihood for data without ``num_classes``.
    """

    def __init__(self, data_info: DataInfo, likelihood: str = "auto"):
        self.shape = tuple(data_info.shape)
        self.likelihood = _LIKELIHOOD_OF_KIND.get(data_info.kind, "gaussian") if likelihood == "auto" else likelihood
        if self.likelihood == "categorical" and not data_info.num_classes:
            raise ValueError("a categorical likelihood needs data with num_classes")
        self.num_classes = data_info.num_classes if self.likelihood == "categorical" else None
        self.features = math.prod(self.shape) * (self.num_classes or 1)
        """Width of the flat input (and of the decoder's flat output)."""

    def flatten(self, x: Tensor, dtype: object) -> Tensor:
        """``[batch, *shape]`` data -> ``[batch, features]`` network input (one-hot for categorical)."""
        if self.num_classes:
            x = nn.functional.one_hot(x.long(), self.num_classes)
        return x.to(dtype).reshape(x.shape[0], -1)

    def unflatten(self, out: Tensor) -> Tensor:
        """``[batch, features]`` decoder output -> ``[batch, *shape]`` (``[..., classes]`` for categorical)."""
        if self.num_classes:
            return out.reshape(out.shape[0], *self.shape, self.num_classes)
        return out.reshape(out.shape[0], *self.shape)


class VAE(nn.Module):
    """Base class of single-latent VAEs: implement ``encode`` and ``decode``, get the rest.

    ``forward`` encodes ``batch["x"]``, decodes a posterior sample in training
    mode and the posterior mode in eval mode (so validation is deterministic),
    and returns a :class:`~vaeforge.api.ModelOutput`. ``sample`` decodes prior
    draws to data space as ``self.likelihood`` says. Override ``sample_prior``
    for a prior other than a standard normal of ``self.latent_dim`` dimensions.

    Subclasses set ``latent_dim`` and ``likelihood`` (``bernoulli``,
    ``gaussian`` or ``categorical``) in ``__init__``.
    """

    latent_dim: int
    likelihood: str

    def encode(self, x: Tensor) -> Any:
        """q(z | x): a posterior with ``sample()``, ``mode()`` and ``kl(prior=None)``."""
        raise NotImplementedError

    def decode(self, z: Tensor) -> Tensor:
        """Decoder output parameters for latents ``z``."""
        raise NotImplementedError

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` draws from the prior: a standard normal on the model's device."""
        device = next(self.parameters()).device
        return torch.randn(n, self.latent_dim, generator=generator, device=device)

    def forward(self, batch: Mapping[str, Tensor]) -> ModelOutput:
        """Encode ``batch["x"]``, take a posterior sample (the mode in eval mode) and decode it."""
        posterior = self.encode(batch["x"])
        z = posterior.sample() if self.training else posterior.mode()
        return ModelOutput(recon=self.decode(z), posterior=posterior, z=z)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` prior draws decoded to data space (Bernoulli draw, mean or argmax)."""
        return decode_sample(self.decode(self.sample_prior(n, generator)), self.likelihood, generator=generator)
