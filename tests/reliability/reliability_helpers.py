"""Shared helpers for the reliability tests: tiny runs, and comparing two run folders bit for bit.

Imported by the test modules of this folder (pytest puts it on ``sys.path``).

Every run here is tiny (a 4-feature synthetic data set, an MLP VAE with one
hidden layer of 8 units) and on the CPU, so a whole run takes well under a
second once torch is imported.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from vaeforge import checkpoint as ckpt
from vaeforge import run
from vaeforge.config import config_from_dict
from vaeforge.plugins import build_registry, make_plugin_manager
from vaeforge.registry import Registry

BASE: dict[str, Any] = {
    "name": "tiny",
    "seed": 3,
    "data": {"name": "synthetic", "params": {"num_examples": 72, "dim": 4, "val_fraction": 0.125},
             "batch_size": 8},
    "model": {"name": "mlp_vae", "params": {"latent_dim": 2, "hidden": [8]}},
    "losses": [{"name": "mse_recon"}, {"name": "kl", "weight": {"schedule": "linear", "start": 0.1, "end": 1.0,
                                                                "epochs": 2}}],
    "optimizer": {"name": "adam", "params": {"lr": 0.01}},
    "scheduler": {"name": "warmup_cosine", "params": {"warmup_steps": 4, "min_factor": 0.1}},
    "trainer": {"epochs": 3, "log_every_n_steps": 2, "device": "cpu", "ema": {"decay": 0.9}},
    "callbacks": [{"name": "checkpoint", "params": {"every_n_steps": 3, "keep_last": 1000}}],
    "loggers": [{"name": "jsonl"}],
}
"""A tiny run: 63 training examples in batches of 8 (8 steps per epoch), EMA, a scheduler and a KL ramp."""


def tiny_config(**changes: Any) -> dict[str, Any]:
    """:data:`BASE` with dotted-path changes, e.g. ``tiny_config(**{"trainer.epochs": 2})``."""
    document = copy.deepcopy(BASE)
    for path, value in changes.items():
        node = document
        *parents, last = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return document


def builtin_registry() -> Registry:
    """The built-in components only (no entry points)."""
    return build_registry(make_plugin_manager(autoload=False))


def train(document: dict[str, Any], run_dir: Path, registry: Registry) -> dict[str, float]:
    """Train ``document`` in a new ``run_dir`` (in this process)."""
    return run.train(config_from_dict(document, registry), registry, run_dir, device="cpu")


def resume(run_dir: Path, registry: Registry) -> dict[str, float]:
    """``vaeforge resume run_dir`` (in this process)."""
    return run.resume(run_dir, registry, device="cpu")


def write_config(document: dict[str, Any], path: Path) -> Path:
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def checkpoints(run_dir: Path) -> list[Path]:
    """Every step folder of a run, oldest first (by step, stage, then suffix)."""
    found = []
    for _, path in ckpt.step_folders(Path(run_dir) / "checkpoints"):
        manifest = ckpt.read_manifest(path)
        found.append((ckpt._order(path, manifest), path))
    return [path for _, path in sorted(found)]


def copy_until(source: Path, target: Path, last: Path) -> Path:
    """A copy of run folder ``source`` whose newest checkpoint is ``last`` (as after a crash there).

    Later checkpoints are left out; the metrics files keep everything the
    finished run wrote, so resuming must also cut them back.
    """
    shutil.copytree(source, target, symlinks=True)
    keep = True
    for path in checkpoints(source):
        if not keep:
            shutil.rmtree(target / path.relative_to(source))
        if path == last:
            keep = False
    best = target / "checkpoints" / "best"
    if best.is_symlink() and not best.exists():
        best.unlink()
    return target


def metric_records(run_dir: Path, name: str = "metrics.jsonl") -> list[dict[str, Any]]:
    """The records of a metrics file without wall-clock values (``time/*``)."""
    records = []
    for line in (Path(run_dir) / name).read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        records.append({k: v for k, v in record.items() if not k.startswith("time/")})
    return records


def final_state(run_dir: Path) -> dict[str, Any]:
    """The newest checkpoint of a run, with every tensor under a readable name."""
    latest = ckpt.find_latest(Path(run_dir) / "checkpoints")
    assert latest is not None, f"{run_dir}: no checkpoint"
    loaded = ckpt.load_checkpoint(latest)
    tensors: dict[str, torch.Tensor] = {f"model/{k}": v for k, v in loaded["model"].items()}
    tensors.update({f"ema/{k}": v for k, v in (loaded["ema"] or {}).items()})
    state = loaded["state"]
    for path, value in _leaves(state, "state"):
        if isinstance(value, (torch.Tensor, np.ndarray)):
            tensors[path] = torch.as_tensor(value)
    scalars = {path: value for path, value in _leaves(_without_wall_clock(state), "state")
               if not isinstance(value, (torch.Tensor, np.ndarray))}
    return {"folder": latest, "tensors": tensors, "scalars": scalars}


def _without_wall_clock(state: dict[str, Any]) -> dict[str, Any]:
    state = dict(state)
    state.pop("loggers", None)  # file sizes, which depend on how long the time/* numbers print
    state["metrics"] = {k: v for k, v in state["metrics"].items() if not k.startswith("time/")}
    return state


def _leaves(node: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, f"{prefix}.{key}")
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            yield from _leaves(value, f"{prefix}[{index}]")
    else:
        yield prefix, node


def differences(a: Path, b: Path, metric_files: tuple[str, ...] = ("metrics.jsonl",)) -> list[str]:
    """Everything that differs between the final states and metrics of two runs (empty: bit for bit equal)."""
    found = []
    left, right = final_state(a), final_state(b)
    for name in sorted(set(left["tensors"]) | set(right["tensors"])):
        x, y = left["tensors"].get(name), right["tensors"].get(name)
        if x is None or y is None:
            found.append(f"{name}: only in {'b' if x is None else 'a'}")
        elif x.dtype != y.dtype or x.shape != y.shape or not torch.equal(x, y):
            found.append(f"{name}: tensors differ")
    for name in sorted(set(left["scalars"]) | set(right["scalars"])):
        x, y = left["scalars"].get(name), right["scalars"].get(name)
        if not (x == y or (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y))):
            found.append(f"{name}: {x!r} != {y!r}")
    for name in metric_files:
        ra, rb = metric_records(a, name), metric_records(b, name)
        if ra != rb:
            first = next((i for i, (x, y) in enumerate(zip(ra, rb)) if x != y), min(len(ra), len(rb)))
            found.append(f"{name}: {len(ra)} vs {len(rb)} records, first difference at record {first}")
    return found
