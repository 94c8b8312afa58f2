"""``mlp_vae``: a fully connected VAE with a Gaussian latent, the reference model."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from attrs import field, frozen
from attrs.validators import ge, in_, min_len
from torch import Tensor, nn

from vaeforge.api import DataInfo, ModelOutput
from vaeforge.distributions import DiagonalGaussian, decode_sample


@frozen(kw_only=True)
class MLPVAEConfig:
    """Sizes and likelihood of :class:`MLPVAE`.

    :param latent_dim: dimensions of the Gaussian latent.
    :param hidden: widths of the hidden layers of the encoder (the decoder mirrors them).
    :param likelihood: ``bernoulli``, ``gaussian`` or ``categorical``; ``auto`` follows the data
        (binary -> bernoulli, continuous -> gaussian, categorical -> categorical).
    :param activation: ``relu``, ``gelu``, ``silu`` or ``tanh``.
    """

    latent_dim: int = field(default=8, validator=ge(1))
    hidden: list[int] = field(factory=lambda: [256, 128], validator=min_len(1))
    likelihood: str = field(default="auto", validator=in_(["auto", "bernoulli", "gaussian", "categorical"]))
    activation: str = field(default="relu", validator=in_(["relu", "gelu", "silu", "tanh"]))


_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}
_LIKELIHOOD_OF_KIND = {"binary": "bernoulli", "continuous": "gaussian", "categorical": "categorical"}


def mlp(sizes: list[int], activation: str) -> nn.Sequential:
    """Linear layers of the given sizes with ``activation`` between them (none after the last)."""
    layers: list[nn.Module] = []
    for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(fan_in, fan_out))
        if index < len(sizes) - 2:
            layers.append(_ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class MLPVAE(nn.Module):
    """A VAE whose encoder and decoder are MLPs over the flattened input.

    Parameters:
        config (`MLPVAEConfig`): sizes, activation and likelihood.
        data_info (`DataInfo`): the shape and kind of the data; categorical data
            is one-hot encoded for the encoder and decoded to ``num_classes`` logits per position.
    """

    def __init__(self, config: MLPVAEConfig, data_info: DataInfo):
        super().__init__()
        self.shape = tuple(data_info.shape)
        self.likelihood = (
            _LIKELIHOOD_OF_KIND.get(data_info.kind, "gaussian") if config.likelihood == "auto" else config.likelihood
        )
        if self.likelihood == "categorical" and not data_info.num_classes:
            raise ValueError("a categorical likelihood needs data with num_classes")
        self.num_classes = data_info.num_classes if self.likelihood == "categorical" else None
        self.latent_dim = config.latent_dim
        positions = math.prod(self.shape)
        input_dim = positions * (self.num_classes or 1)
        self.encoder = mlp([input_dim, *config.hidden, 2 * config.latent_dim], config.activation)
        self.decoder = mlp([config.latent_dim, *reversed(config.hidden), input_dim], config.activation)

    def encode(self, x: Tensor) -> DiagonalGaussian:
        """q(z | x) for a batch of inputs."""
        if self.num_classes:
            x = nn.functional.one_hot(x.long(), self.num_classes).to(self.encoder[0].weight.dtype)
        mean, logvar = self.encoder(x.reshape(x.shape[0], -1)).chunk(2, dim=-1)
        return DiagonalGaussian(mean, logvar)

    def decode(self, z: Tensor) -> Tensor:
        """Decoder output parameters, shaped like the data (plus a class axis for categorical data)."""
        out = self.decoder(z)
        if self.num_classes:
            return out.reshape(z.shape[0], *self.shape, self.num_classes)
        return out.reshape(z.shape[0], *self.shape)

    def forward(self, batch: Mapping[str, Tensor]) -> ModelOutput:
        posterior = self.encode(batch["x"])
        z = posterior.sample() if self.training else posterior.mode()
        return ModelOutput(recon=self.decode(z), posterior=posterior, z=z)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` prior samples decoded to data space."""
        device = self.decoder[0].weight.device
        z = torch.randn(n, self.latent_dim, generator=generator, device=device)
        return decode_sample(self.decode(z), self.likelihood, generator=generator)
