"""Writing model samples: ``.npy`` arrays for any model, PNG grids for image models."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

SAMPLE_CHUNK = 65_536


@torch.no_grad()
def draw(model: nn.Module, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` samples from ``model.sample`` in chunks of at most :data:`SAMPLE_CHUNK`, on the CPU."""
    sizes = [min(SAMPLE_CHUNK, n - start) for start in range(0, n, SAMPLE_CHUNK)]
    chunks = [model.sample(size, generator=generator).cpu() for size in sizes]
    return torch.cat(chunks)


def is_image_batch(samples: torch.Tensor) -> bool:
    """True for ``[N, C, H, W]`` with 1 or 3 channels."""
    return samples.dim() == 4 and samples.shape[1] in (1, 3)


def save_grid(images: torch.Tensor, path: Path) -> None:
    """Save ``[N, C, H, W]`` images in [0, 1] as one PNG grid (matplotlib's Agg, no torchvision)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    n, channels, height, width = images.shape
    columns = math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    grid = torch.ones(channels, rows * (height + 1) + 1, columns * (width + 1) + 1)
    for index, image in enumerate(images.float().clamp(0, 1)):
        r, c = divmod(index, columns)
        top, left = 1 + r * (height + 1), 1 + c * (width + 1)
        grid[:, top : top + height, left : left + width] = image
    array = grid.permute(1, 2, 0).numpy()
    plt.imsave(path, array[..., 0] if channels == 1 else array, cmap="gray" if channels == 1 else None, vmin=0, vmax=1)


def save_samples(samples: torch.Tensor, path: Path) -> Path:
    """Write ``samples`` to ``path``: ``.npy`` always works, ``.png`` needs image samples."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".png":
        if not is_image_batch(samples):
            raise ValueError(f"an image grid needs image samples [N, C, H, W]; got shape {tuple(samples.shape[1:])}")
        save_grid(samples, path)
    else:
        np.save(path, samples.numpy(), allow_pickle=False)
    return path
