"""Reading trained runs back: ``vaeforge sample`` and ``vaeforge evaluate``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaeforge import checkpoint as ckpt
from vaeforge.errors import RunFolderError, UserError
from vaeforge.registry import Registry
from vaeforge.run import load_run_config

SAMPLE_CHUNK = 65_536


def choose_checkpoint(folder: Path, which: str) -> Path:
    """``best`` (falling back to the newest), ``last`` (the newest), or an explicit checkpoint folder."""
    root = Path(folder) / "checkpoints"
    if which not in ("best", "last"):
        return Path(which)
    if which == "best" and (root / "best" / ckpt.MANIFEST).is_file():
        return root / "best"
    latest = ckpt.find_latest(root)
    if latest is None:
        raise RunFolderError(f"{folder}: no complete checkpoint in {root}")
    return latest


def _trainer(folder: Path, registry: Registry, which: str, device: str | None) -> Any:
    from vaeforge.trainer.loop import Trainer

    config = load_run_config(folder, registry)
    trainer = Trainer(config, registry, folder, device=device, loggers=False)
    trainer.load_checkpoint(choose_checkpoint(folder, which))
    return trainer


def evaluate_run(folder: Path, registry: Registry, checkpoint: str = "best", device: str | None = None) -> dict[str, float]:
    """Validation metrics (losses and registered metrics) of a run's checkpoint."""
    trainer = _trainer(folder, registry, checkpoint, device)
    if trainer.val_batches is None and not trainer.metric_fns:
        raise UserError(f"{folder}: the run has no validation split and no metrics to evaluate")
    stage = trainer.stages[min(trainer.stage_index, len(trainer.stages) - 1)]
    trainer._setup_stage(stage)
    metrics = trainer._validate()
    return {"step": float(trainer.global_step), **metrics}


def sample_run(folder: Path, registry: Registry, n: int, out: Path, seed: int = 0,
               checkpoint: str = "best", device: str | None = None) -> Path:
    """Draw ``n`` samples from the run's evaluation model into ``out`` (.npy, or .png for images)."""
    if n < 1:
        raise UserError(f"-n must be at least 1, got {n}")
    if out.suffix not in (".npy", ".png"):
        raise UserError(f"--out {out}: expected a .npy or .png file name")
    trainer = _trainer(folder, registry, checkpoint, device)
    model = trainer.eval_model().eval()
    generator = torch.Generator(device=trainer.device).manual_seed(seed)
    chunks = []
    with torch.no_grad():
        for start in range(0, n, SAMPLE_CHUNK):
            chunks.append(model.sample(min(SAMPLE_CHUNK, n - start), generator=generator).cpu())
    samples = torch.cat(chunks)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npy":
        np.save(out, samples.numpy(), allow_pickle=False)
        return out
    if samples.dim() != 4:
        raise UserError(f"--out {out}: an image grid needs image samples [N, C, H, W]; this model gives "
                        f"shape {tuple(samples.shape[1:])}, so write a .npy file instead")
    save_grid(samples, out)
    return out


def save_grid(images: torch.Tensor, path: Path) -> None:
    """Save ``[N, C, H, W]`` images in [0, 1] as one PNG grid (matplotlib, no torchvision)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    n, channels, height, width = images.shape
    columns = math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    grid = torch.ones(channels, rows * (height + 1) + 1, columns * (width + 1) + 1)
    for index, image in enumerate(images.float().clamp(0, 1)):
        r, c = divmod(index, columns)
        grid[:, 1 + r * (height + 1): 1 + r * (height + 1) + height, 1 + c * (width + 1): 1 + c * (width + 1) + width] = image
    array = grid.permute(1, 2, 0).numpy()
    plt.imsave(path, array[..., 0] if channels == 1 else array, cmap="gray" if channels == 1 else None)
