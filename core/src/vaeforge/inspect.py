"""Reading trained runs back: ``vaeforge sample`` and ``vaeforge evaluate``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vaeforge import checkpoint as ckpt
from vaeforge.errors import RunFolderError, UserError
from vaeforge.registry import Registry
from vaeforge.run import load_run_config
from vaeforge.samples import draw, save_samples


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


def evaluate_run(
    folder: Path, registry: Registry, checkpoint: str = "best", device: str | None = None
) -> dict[str, float]:
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
    generator = torch.Generator(device=trainer.device).manual_seed(seed)
    samples = draw(trainer.eval_model().eval(), n, generator)
    try:
        return save_samples(samples, out)
    except ValueError as exc:
        raise UserError(f"--out {out}: {exc}; write a .npy file instead") from None
