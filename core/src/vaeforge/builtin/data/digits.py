"""``digits``: scikit-learn's bundled 1,797 8x8 handwritten digits (no download)."""

from __future__ import annotations

import torch
from attrs import field, frozen
from attrs.validators import ge, le, lt

from vaeforge.api import DataInfo, DataSplits
from vaeforge.builtin.data.split import split_tensors


@frozen(kw_only=True)
class DigitsConfig:
    """The digits images as ``x`` of shape ``[1, 8, 8]`` and their labels as ``y``.

    :param binarize: threshold the 0..16 grey levels at ``threshold`` (binary data); otherwise
        scale them to [0, 1] (continuous data).
    :param threshold: the grey level from which a pixel is 1 when binarizing.
    :param val_fraction: the fraction held out for validation.
    :param split_seed: seed of the train/validation split.
    """

    binarize: bool = True
    threshold: int = field(default=8, validator=[ge(1), le(16)])
    val_fraction: float = field(default=0.1, validator=[ge(0.0), lt(1.0)])
    split_seed: int = 0


class Digits:
    """Loads the digits with scikit-learn (install ``vaeforge[digits]``)."""

    def __init__(self, config: DigitsConfig):
        self.config = config

    def load(self) -> DataSplits:
        try:
            from sklearn.datasets import load_digits
        except ImportError:
            raise RuntimeError("the digits data source needs scikit-learn: pip install 'vaeforge[digits]'") from None
        bunch = load_digits()
        images = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1)
        x = (images >= self.config.threshold).float() if self.config.binarize else images / 16.0
        y = torch.as_tensor(bunch.target, dtype=torch.long)
        train, val = split_tensors({"x": x, "y": y}, self.config.val_fraction, self.config.split_seed)
        kind = "binary" if self.config.binarize else "continuous"
        return DataSplits(train=train, val=val, info=DataInfo(shape=(1, 8, 8), kind=kind, num_train=len(train["x"])))
