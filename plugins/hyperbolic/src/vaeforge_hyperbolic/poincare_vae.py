"""``poincare_vae``: a fully connected VAE whose latent lives on a Poincaré ball."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from attrs import field, frozen
from attrs.validators import ge, gt, in_, min_len
from torch import Tensor, nn

from vaeforge.api import DataInfo, ModelOutput
from vaeforge.distributions import decode_sample
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
    likelihood: str = field(default="auto", validator=in_(["auto", "bernoulli", "gaussian", "categorical"]))
    activation: str = field(default="silu", validator=in_(["relu", "gelu", "silu", "tanh"]))


_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}
_LIKELIHOOD_OF_KIND = {"binary": "bernoulli", "continuous": "gaussian", "categorical": "categorical"}


def _mlp(sizes: list[int], activation: str, *, last_activation: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(fan_in, fan_out))
        if last_activation or index < len(sizes) - 2:
            layers.append(_ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class PoincareVAE(nn.Module):
    """A VAE with MLP encoder and decoder and a wrapped normal latent on a Poincaré ball.

    The encoder's features go through a :class:`~vaeforge_hyperbolic.latent.PoincareLatent`
    head; the decoder reads ball points through ``head.to_decoder`` (the
    logarithmic map at the origin). The prior is the wrapped normal ``WN(0, 1)``
    and the ``kl`` loss term's value is a one-sample Monte Carlo estimate.

    Parameters:
        config (`PoincareVAEConfig`): sizes, curvature, activation and likelihood.
        data_info (`DataInfo`): the shape and kind of the data; categorical data
            is one-hot encoded for the encoder and decoded to ``num_classes`` logits per position.
    """

    def __init__(self, config: PoincareVAEConfig, data_info: DataInfo):
        super().__init__()
        self.shape = tuple(data_info.shape)
        self.likelihood = (
            _LIKELIHOOD_OF_KIND.get(data_info.kind, "gaussian") if config.likelihood == "auto" else config.likelihood
        )
        if self.likelihood == "categorical" and not data_info.num_classes:
            raise ValueError("a categorical likelihood needs data with num_classes")
        self.num_classes = data_info.num_classes if self.likelihood == "categorical" else None
        input_dim = math.prod(self.shape) * (self.num_classes or 1)
        # encoder: data -> features -> wrapped normal on the ball
        self.encoder = _mlp([input_dim, *config.hidden], config.activation, last_activation=True)
        self.latent = PoincareLatent(
            config.hidden[-1], config.latent_dim, curvature=config.curvature, min_scale=config.min_scale
        )
        # decoder: log0(z) -> data parameters
        self.decoder = _mlp([config.latent_dim, *reversed(config.hidden), input_dim], config.activation,
                            last_activation=False)

    def encode(self, x: Tensor) -> WrappedNormal:
        """q(z | x) for a batch of inputs."""
        if self.num_classes:
            x = nn.functional.one_hot(x.long(), self.num_classes).to(self.encoder[0].weight.dtype)
        return self.latent(self.encoder(x.reshape(x.shape[0], -1)))

    def decode(self, z: Tensor) -> Tensor:
        """Decoder output parameters for ball points ``z``, shaped like the data (plus a class axis if categorical)."""
        out = self.decoder(self.latent.to_decoder(z))
        if self.num_classes:
            return out.reshape(z.shape[0], *self.shape, self.num_classes)
        return out.reshape(z.shape[0], *self.shape)

    def forward(self, batch: Mapping[str, Tensor]) -> ModelOutput:
        """Encode ``batch["x"]``, take a posterior sample (the mean in eval mode) and decode it."""
        posterior = self.encode(batch["x"])
        z = posterior.sample() if self.training else posterior.mode()
        return ModelOutput(recon=self.decode(z), posterior=posterior, z=z)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` prior samples decoded to data space (argmax, mean or Bernoulli draw)."""
        z = self.latent.sample_prior(n, generator=generator)
        return decode_sample(self.decode(z), self.likelihood, generator=generator)
