"""``tensor_file``: examples from a ``.npy`` or ``.safetensors`` file (never a pickle)."""

from __future__ import annotations

from pathlib import Path

import torch
from attrs import field, frozen
from attrs.validators import ge, in_, lt, optional

from vaeforge.api import DataInfo, DataSplits
from vaeforge.builtin.data.split import split_tensors


@frozen(kw_only=True)
class TensorFileConfig:
    """A file of examples, first axis = examples.

    :param path: a ``.npy`` file (loaded with ``allow_pickle=False``) or a ``.safetensors`` file.
    :param key: the tensor to use from a ``.safetensors`` file; defaults to its only tensor or ``x``.
    :param kind: ``binary``, ``continuous`` or ``categorical``; ``auto`` guesses from the values.
    :param num_classes: values per position for categorical data; ``auto`` takes max + 1.
    :param val_fraction: the fraction held out for validation.
    :param split_seed: seed of the train/validation split.
    """

    path: str
    key: str | None = None
    kind: str = field(default="auto", validator=in_(["auto", "binary", "continuous", "categorical"]))
    num_classes: int | None = field(default=None, validator=optional(ge(2)))
    val_fraction: float = field(default=0.1, validator=[ge(0.0), lt(1.0)])
    split_seed: int = 0


class TensorFile:
    """Reads the file once into memory (the fast path)."""

    def __init__(self, config: TensorFileConfig):
        self.config = config

    def _read(self) -> torch.Tensor:
        path = Path(self.config.path)
        if not path.is_file():
            raise FileNotFoundError(f"tensor_file: no such file: {path}")
        if path.suffix == ".npy":
            import numpy as np

            try:
                return torch.from_numpy(np.load(path, allow_pickle=False))
            except ValueError as exc:
                raise ValueError(f"tensor_file: {path}: {exc}") from None
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            tensors = load_file(path)
            key = self.config.key or ("x" if "x" in tensors or len(tensors) != 1 else next(iter(tensors)))
            if key not in tensors:
                raise KeyError(f"tensor_file: {path} has no tensor {key!r} (it has {', '.join(sorted(tensors))})")
            return tensors[key]
        raise ValueError(f"tensor_file: {path}: expected a .npy or .safetensors file")

    def load(self) -> DataSplits:
        x = self._read()
        kind = self.config.kind
        if kind == "auto":
            if x.is_floating_point():
                kind = "binary" if bool(((x == 0) | (x == 1)).all()) else "continuous"
            else:
                kind = "categorical"
        num_classes = None
        if kind == "categorical":
            x = x.long()
            num_classes = self.config.num_classes or int(x.max()) + 1
        else:
            x = x.float()
        train, val = split_tensors({"x": x}, self.config.val_fraction, self.config.split_seed)
        info = DataInfo(shape=tuple(x.shape[1:]), kind=kind, num_classes=num_classes, num_train=len(train["x"]))
        return DataSplits(train=train, val=val, info=info)
