"""``synthetic``: generated data for tests and benchmarks, in memory or as an endless stream."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from attrs import field, frozen
from attrs.validators import ge, in_, lt

from vaeforge.api import DataInfo, DataSplits
from vaeforge.builtin.data.split import split_tensors


@frozen(kw_only=True)
class SyntheticConfig:
    """Random data from a fixed low-dimensional generator.

    :param num_examples: examples in memory (ignored by ``stream``).
    :param dim: features per example.
    :param kind: ``continuous`` (a noisy linear map of a 2-D latent), ``binary`` (its sign)
        or ``categorical`` (its quantiles, 3 classes).
    :param val_fraction: the fraction held out for validation.
    :param seed: the generator's seed.
    :param stream: serve an endless ``IterableDataset`` instead of in-memory tensors.
    :param map_style: serve a map-style ``Dataset`` (the DataLoader path) instead of tensors.
    """

    num_examples: int = field(default=1024, validator=ge(2))
    dim: int = field(default=16, validator=ge(1))
    kind: str = field(default="continuous", validator=in_(["continuous", "binary", "categorical"]))
    val_fraction: float = field(default=0.1, validator=[ge(0.0), lt(1.0)])
    seed: int = 0
    stream: bool = False
    map_style: bool = False


def _generate(config: SyntheticConfig, n: int, generator: torch.Generator) -> torch.Tensor:
    mixing = torch.randn(2, config.dim, generator=torch.Generator().manual_seed(config.seed))
    latent = torch.randn(n, 2, generator=generator)
    x = latent @ mixing + 0.1 * torch.randn(n, config.dim, generator=generator)
    if config.kind == "binary":
        return (x > 0).float()
    if config.kind == "categorical":
        return (x > -0.5).long() + (x > 0.5).long()
    return x


class TensorDataset(torch.utils.data.Dataset):
    """A map-style view of equally long tensors; items are ``{"x": ...}`` mappings."""

    def __init__(self, tensors: dict[str, torch.Tensor]):
        self.tensors = tensors

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: v[index] for k, v in self.tensors.items()}


class SyntheticStream(torch.utils.data.IterableDataset):
    """An endless stream of single examples, reproducible from the seed."""

    def __init__(self, config: SyntheticConfig):
        self.config = config

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        generator = torch.Generator().manual_seed(self.config.seed + 1)
        while True:
            for row in _generate(self.config, 256, generator):
                yield {"x": row}


class Synthetic:
    """The ``synthetic`` data source."""

    def __init__(self, config: SyntheticConfig):
        self.config = config

    def load(self) -> DataSplits:
        config = self.config
        x = _generate(config, config.num_examples, torch.Generator().manual_seed(config.seed + 1))
        train, val = split_tensors({"x": x}, config.val_fraction, config.seed)
        info = DataInfo(
            shape=(config.dim,),
            kind=config.kind,
            num_classes=3 if config.kind == "categorical" else None,
            num_train=None if config.stream else len(train["x"]),
        )
        if config.stream:
            return DataSplits(train=SyntheticStream(config), val=val, info=info)
        if config.map_style:
            return DataSplits(train=TensorDataset(train), val=TensorDataset(val) if val else None, info=info)
        return DataSplits(train=train, val=val, info=info)
