"""Shared test helpers: tiny run configs and an in-process trainer."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

TINY_RUN: dict[str, Any] = {
    "name": "tiny",
    "seed": 0,
    "data": {"name": "synthetic", "params": {"num_examples": 256, "dim": 8}, "batch_size": 32},
    "model": {"name": "mlp_vae", "params": {"latent_dim": 2, "hidden": [16]}},
    "losses": [{"name": "mse_recon"}, {"name": "kl", "weight": 0.5}],
    "optimizer": {"name": "adam", "params": {"lr": 0.01}},
    "trainer": {"epochs": 2, "log_every_n_steps": 4},
    "loggers": [{"name": "jsonl"}],
}
"""A run that trains in well under a second: 8-D synthetic data, 7 batches an epoch."""


def tiny_run(**changes: Any) -> dict[str, Any]:
    """A deep copy of :data:`TINY_RUN` with top-level keys replaced (``trainer`` is merged)."""
    run = copy.deepcopy(TINY_RUN)
    for key, value in changes.items():
        if key == "trainer":
            run["trainer"].update(value)
        else:
            run[key] = value
    return run


@pytest.fixture
def make_trainer(vaeforge_pm, tmp_path: Path):
    """Build a :class:`~vaeforge.trainer.loop.Trainer` for a run document, with extra plugins registered."""
    from vaeforge.config import config_from_dict
    from vaeforge.plugins import PluginInfo, build_registry
    from vaeforge.run import prepare_run_dir
    from vaeforge.trainer.loop import Trainer

    def make(document: dict[str, Any], *plugins: Any, run_dir: Path | None = None) -> Trainer:
        for plugin in plugins:
            name = getattr(plugin, "__name__", type(plugin).__name__)
            if vaeforge_pm.get_plugin(name) is None:
                vaeforge_pm.add_plugin(plugin, PluginInfo(name=name, module=name))
        registry = build_registry(vaeforge_pm)
        config = config_from_dict(document, registry)
        folder = run_dir or tmp_path / "run"
        trainer = Trainer(config, registry, folder)
        prepare_run_dir(folder, config)
        return trainer

    return make
