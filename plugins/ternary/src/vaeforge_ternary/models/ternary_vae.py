"""``ternary_vae``: a single VAE over the 9 trits of an operation with a categorical decoder."""

from __future__ import annotations

from attrs import field, frozen
from attrs.validators import ge, in_, min_len
from torch import Tensor

from vaeforge.api import DataInfo
from vaeforge.blocks import ACTIVATIONS, VAE
from vaeforge.distributions import DiagonalGaussian
from vaeforge_ternary.models.blocks import TritDecoder, TritEncoder, check_data


@frozen(kw_only=True)
class TernaryVAEConfig:
    """Sizes of :class:`TernaryVAE`.

    :param latent_dim: dimensions of the Gaussian latent.
    :param encoder_hidden: hidden widths of the encoder MLP (27 one-hot inputs).
    :param decoder_hidden: hidden widths of the decoder MLP (to 9 x 3 logits).
    :param activation: ``relu``, ``gelu``, ``silu``, ``tanh`` or ``leaky_relu``; a smooth one (silu)
        gives decoder cells of more even prior mass, hence higher coverage, than relu.
    """

    latent_dim: int = field(default=32, validator=ge(1))
    encoder_hidden: list[int] = field(factory=lambda: [256, 256], validator=min_len(1))
    decoder_hidden: list[int] = field(factory=lambda: [256, 256], validator=min_len(1))
    activation: str = field(default="silu", validator=in_(list(ACTIVATIONS)))


class TernaryVAE(VAE):
    """A VAE over ternary operations: ``x`` is ``[batch, 9]`` classes, the decoder gives ``[batch, 9, 3]`` logits.

    ``forward`` and ``sample`` come from :class:`vaeforge.blocks.VAE`: a posterior
    sample while training, its mean in eval mode; prior draws decoded by argmax,
    which is what the coverage metric counts.

    Parameters:
        config (`TernaryVAEConfig`): latent size, widths, activation.
        data_info (`DataInfo`): must describe 9 categorical positions with 3 classes.
    """

    def __init__(self, config: TernaryVAEConfig, data_info: DataInfo):
        super().__init__()
        check_data(data_info)
        self.latent_dim = config.latent_dim
        self.likelihood = "categorical"
        self.encoder = TritEncoder(latent_dim=config.latent_dim, hidden=list(config.encoder_hidden),
                                   act=config.activation)
        self.decoder = TritDecoder(latent_dim=config.latent_dim, hidden=list(config.decoder_hidden),
                                   act=config.activation)

    def encode(self, x: Tensor) -> DiagonalGaussian:
        """q(z | x) for ``[batch, 9]`` class indices."""
        return self.encoder(x)

    def decode(self, z: Tensor) -> Tensor:
        """``[batch, 9, 3]`` logits for latents ``[batch, latent_dim]``."""
        return self.decoder(z)
