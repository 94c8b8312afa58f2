"""``poincare_vae``: a fully connected VAE whose latent lives on a Poincaré ball."""

from __future__ import annotations

import torch
from attrs import field, frozen
from attrs.validators import ge, gt, in_, min_len
from torch import Tensor

from vaeforge.api import DataInfo
from vaeforge.blocks import ACTIVATIONS, LIKELIHOODS, VAE, DataAdapter, mlp
from vaeforge_hyperbolic.latent import PoincareLatent, WrappedNormal


@frozen(kw_only=True)
class PoincareVAEConfig:
    """Sizes, curvature and likelihood of :class:`PoincareVAE`.

    :param latent_dim: dimension of the Poincaré ball.
    :param curvature: ``c > 0``; the ball has curvature ``-c`` and radius ``1 / sqrt(c)``.
    :param min_scale: floor of the posterior's scale (in the orthonormal tangent frame).
    :param hidden: widths of the encoder's hidden layers (the decoder mirrors them).
    :param likelihood: ``bernoulli``, ``gaussian`` or ``categorical``; ``auto`` follows the data
        (binary -> bernoulli, continuous -> gaussian, categorical -> categorical).
    :param activation: ``relu``, ``gelu``, ``silu`` or ``tanh``.
    """

    latent_dim: int = field(default=16, validator=ge(1))
    curvature: float = field(default=1.0, validator=gt(0.0))
    min_scale: float = field(default=1e-3, validator=ge(0.0))
    hidden: list[int] = field(factory=lambda: [256], validator=min_len(1))
    likelihood: str = field(default="auto", validator=in_(LIKELIHOODS))
    activation: str = field(default="silu", validator=in_(list(ACTIVATIONS)))


class PoincareVAE(VAE):
    """A VAE with MLP encoder and decoder and a wrapped normal latent on a Poincaré ball.

    The encoder's features go through a :class:`~vaeforge_hyperbolic.latent.PoincareLatent`
    head; the decoder reads ball points through ``latent.to_decoder`` (the
    logarithmic map at the origin). The prior is the wrapped normal ``WN(0, 1)``,
    and the ``kl`` loss term's value is a one-sample Monte Carlo estimate.
    ``forward`` and ``sample`` come from :class:`vaeforge.blocks.VAE`.

    Parameters:
        config (`PoincareVAEConfig`): sizes, curvature, activation and likelihood.
        data_info (`DataInfo`): the shape and kind of the data; categorical data
            is one-hot encoded for the encoder and decoded to ``num_classes`` logits per position.
    """

    def __init__(self, config: PoincareVAEConfig, data_info: DataInfo):
        super().__init__()
        self.adapter = DataAdapter(data_info, config.likelihood)
        self.likelihood = self.adapter.likelihood
        self.latent_dim = config.latent_dim
        features = self.adapter.features
        # encoder: data -> features -> wrapped normal on the ball
        self.encoder = mlp([features, *config.hidden], config.activation, last_activation=True)
        self.latent = PoincareLatent(
            config.hidden[-1], config.latent_dim, curvature=config.curvature, min_scale=config.min_scale
        )
        # decoder: log0(z) -> data parameters
        self.decoder = mlp([config.latent_dim, *reversed(config.hidden), features], config.activation)

    def encode(self, x: Tensor) -> WrappedNormal:
        """q(z | x) for a batch of inputs."""
        return self.latent(self.encoder(self.adapter.flatten(x, self.encoder[0].weight.dtype)))

    def decode(self, z: Tensor) -> Tensor:
        """Decoder output parameters for ball points ``z``, shaped like the data (plus a class axis if categorical)."""
        return self.adapter.unflatten(self.decoder(self.latent.to_decoder(z)))

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` ball points from the wrapped normal prior ``WN(0, 1)``."""
        return self.latent.sample_prior(n, generator=generator)
