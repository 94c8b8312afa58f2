"""Building blocks shared by the ternary models: one-hot MLP encoder, categorical decoder.

Activations and plain MLPs come from :mod:`vaeforge.blocks`.

Every model here reads an operation as 9 one-hot trits (27 inputs) and
decodes to ``[batch, 9, 3]`` logits.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from vaeforge.api import DataInfo
from vaeforge.blocks import ACTIVATIONS, mlp
from vaeforge.distributions import DiagonalGaussian
from vaeforge_ternary.ops import NUM_CLASSES, NUM_TRITS

INPUT_DIM = NUM_TRITS * NUM_CLASSES


class TritEncoder(nn.Module):
    """q(z | x): an MLP over the one-hot operation to a diagonal Gaussian.

    Parameters:
        latent_dim (`int`): dimensions of z.
        hidden (`list[int]`): hidden widths.
        act (`str`): activation name.
    """

    def __init__(self, *, latent_dim: int, hidden: list[int], act: str):
        super().__init__()
        self.net = mlp([INPUT_DIM, *hidden, 2 * latent_dim], act)

    def forward(self, x: Tensor) -> DiagonalGaussian:
        one_hot = F.one_hot(x.long(), NUM_CLASSES).to(self.net[0].weight.dtype).flatten(1)
        mean, logvar = self.net(one_hot).chunk(2, dim=-1)
        return DiagonalGaussian(mean, logvar)


class TritDecoder(nn.Module):
    """p(x | z): an MLP from z to ``[batch, 9, 3]`` logits, optionally residual.

    With ``residual=True`` every hidden layer after the first of equal width adds
    its input back (``h + act(W h)``), which keeps a deeper decoder stable.

    Parameters:
        latent_dim (`int`): dimensions of z.
        hidden (`list[int]`): hidden widths.
        act (`str`): activation name.
        residual (`bool`, *optional*, defaults to `False`): residual hidden layers.
    """

    def __init__(self, *, latent_dim: int, hidden: list[int], act: str, residual: bool = False):
        super().__init__()
        sizes = [latent_dim, *hidden]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.skips = [residual and a == b and i > 0 for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))]
        self.act = ACTIVATIONS[act]()
        self.out = nn.Linear(sizes[-1], INPUT_DIM)

    def forward(self, z: Tensor) -> Tensor:
        h = z
        for layer, skip in zip(self.layers, self.skips):
            y = self.act(layer(h))
            h = h + y if skip else y
        return self.out(h).view(z.shape[0], NUM_TRITS, NUM_CLASSES)


def check_data(info: DataInfo) -> None:
    """Raise ValueError unless ``info`` describes ternary operations (9 positions, 3 classes)."""
    if tuple(info.shape) != (NUM_TRITS,) or info.kind != "categorical" or info.num_classes != NUM_CLASSES:
        raise ValueError(
            f"ternary models need categorical data of shape ({NUM_TRITS},) with {NUM_CLASSES} classes "
            f"(the ternary_ops data source); got shape {tuple(info.shape)}, kind {info.kind!r}, "
            f"num_classes {info.num_classes}"
        )
