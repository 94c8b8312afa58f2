"""``mlp_vae``: a fully connected VAE with a Gaussian latent, the reference model."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from attrs import field, frozen
from attrs.validators import ge, in_, min_len
from torch import Tensor, nn

from vaeforge.api import DataInfo, ModelOutput
from vaeforge.blocks import ACTIVATIONS, LIKELIHOODS, DataAdapter, mlp
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
    likelihood: str = field(default="auto", validator=in_(LIKELIHOODS))
    activation: str = field(default="relu", validator=in_(list(ACTIVATIONS)))


class MLPVAE(nn.Module):
    """A VAE whose encoder and decoder are MLPs over the flattened input.

    In training mode ``forward`` decodes a posterior sample; in eval mode it
    decodes the posterior mean, so validation metrics are deterministic.

    Parameters:
        config (`MLPVAEConfig`): sizes, activation and likelihood.
        data_info (`DataInfo`): the shape and kind of the data; categorical data
            is one-hot encoded for the encoder and decoded to ``num_classes`` logits per position.
    """

    def __init__(self, config: MLPVAEConfig, data_info: DataInfo):
        super().__init__()
        self.adapter = DataAdapter(data_info, config.likelihood)
        self.likelihood = self.adapter.likelihood
        self.latent_dim = config.latent_dim
        features = self.adapter.features
        self.encoder = mlp([features, *config.hidden, 2 * config.latent_dim], config.activation)
        self.decoder = mlp([config.latent_dim, *reversed(config.hidden), features], config.activation)

    def encode(self, x: Tensor) -> DiagonalGaussian:
        """q(z | x) for a batch of inputs."""
        mean, logvar = self.encoder(self.adapter.flatten(x, self.encoder[0].weight.dtype)).chunk(2, dim=-1)
        return DiagonalGaussian(mean, logvar)

    def decode(self, z: Tensor) -> Tensor:
        """Decoder output parameters, shaped like the data (plus a class axis for categorical data)."""
        return self.adapter.unflatten(self.decoder(z))

    def forward(self, batch: Mapping[str, Tensor]) -> ModelOutput:
        """Encode ``batch["x"]``, take a posterior sample (the mean in eval mode) and decode it."""
        posterior = self.encode(batch["x"])
        z = posterior.sample() if self.training else posterior.mode()
        return ModelOutput(recon=self.decode(z), posterior=posterior, z=z)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` prior samples decoded to data space (Bernoulli draw, mean or argmax)."""
        device = self.decoder[0].weight.device
        z = torch.randn(n, self.latent_dim, generator=generator, device=device)
        return decode_sample(self.decode(z), self.likelihood, generator=generator)
