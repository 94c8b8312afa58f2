"""``mlp_vae``: a fully connected VAE with a Gaussian latent, the reference model."""

from __future__ import annotations

from attrs import field, frozen
from attrs.validators import ge, in_, min_len
from torch import Tensor

from vaeforge.api import DataInfo
from vaeforge.blocks import ACTIVATIONS, LIKELIHOODS, VAE, DataAdapter, mlp
from vaeforge.distributions import DiagonalGaussian


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


class MLPVAE(VAE):
    """A VAE whose encoder and decoder are MLPs over the flattened input.

    ``forward`` and ``sample`` come from :class:`vaeforge.blocks.VAE`.

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
