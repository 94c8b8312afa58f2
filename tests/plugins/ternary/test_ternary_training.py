"""End to end: the presets through the real command line, and an exact resume of the dual model."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch

from vaeforge import checkpoint as ckpt
from vaeforge import run
from vaeforge.config import config_from_dict

SMALL_METRIC = "metrics=[{name: ternary_coverage, params: {samples: [20000]}}]"


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["ternary", "ternary-dual", "ternary-hyperbolic"])
def test_preset_trains_through_the_cli(preset, tmp_path):
    folder = tmp_path / "run"
    command = [sys.executable, "-m", "vaeforge", "train", preset, "--run-dir", str(folder),
               "trainer.epochs=1", "data.subset=2048", "loggers=[{name: jsonl}]", SMALL_METRIC]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    validation = next(r for r in records if "val/coverage_20k" in r)
    assert 0.0 < validation["val/coverage_20k"] <= 1.0
    assert validation["val/coverage_ideal_20k"] == pytest.approx(1 - (1 - 1 / 19_683) ** 20_000)
    assert 0.0 <= validation["val/recon_exact"] <= 1.0
    if preset == "ternary-dual":
        assert "val/recon_exact_b" in validation
        assert any("train/ternary_dual/statenet/lr" in r or "train/rho" in r for r in records)


DUAL = {
    "name": "dual-resume",
    "seed": 1,
    "data": {"name": "ternary_ops", "batch_size": 64, "subset": 512},
    "model": {"name": "ternary_dual_vae", "params": {
        "latent_dim": 4, "a_encoder_hidden": [16], "a_decoder_hidden": [16], "b_encoder_hidden": [16],
        "b_decoder_hidden": [16, 16],
        "rho": {"isolation_epochs": 0.5, "consolidation_epochs": 1.0, "resonance_epochs": 2.0},
        "temperatures": {"a_period": 1.0, "b_epochs": 3.0}}},
    "losses": [{"name": "ternary_dual", "params": {"beta_warmup_epochs": 1.0, "output_entropy": 0.01,
                                                   "repulsion": 0.01}},
               {"name": "padic_ranking", "weight": 0.1}],
    "optimizer": {"name": "adam", "params": {"lr": 0.01}},
    "scheduler": {"name": "warmup_cosine", "params": {"warmup_steps": 4}},
    "trainer": {"epochs": 3, "log_every_n_steps": 4, "device": "cpu"},
    "metrics": [{"name": "ternary_coverage", "params": {"samples": [1000]}}],
    "callbacks": [{"name": "checkpoint", "params": {"every_n_steps": 5, "keep_last": 100}}],
    "loggers": [{"name": "jsonl"}],
}


def final_tensors(folder):
    loaded = ckpt.load_checkpoint(ckpt.find_latest(folder / "checkpoints"))
    flat = dict(loaded["model"])
    flat.update({f"state/{k}": v for k, v in ckpt.flatten_state(loaded["state"]["losses"])[1].items()})
    return flat


@pytest.mark.slow
def test_the_dual_model_resumes_bit_for_bit(ternary_registry, tmp_path):
    config = config_from_dict(DUAL, ternary_registry)
    reference = tmp_path / "reference"
    run.train(config, ternary_registry, reference, device="cpu")
    steps = sorted(ckpt.step_folders(reference / "checkpoints"))
    middle_step, middle = steps[len(steps) // 2]
    copy = tmp_path / "copy"
    shutil.copytree(reference, copy)
    for step, path in ckpt.step_folders(copy / "checkpoints"):
        if step > middle_step:
            shutil.rmtree(path)
    run.resume(copy, ternary_registry, device="cpu")
    expected, resumed = final_tensors(reference), final_tensors(copy)
    assert expected.keys() == resumed.keys()
    assert [k for k in expected if not torch.equal(expected[k], resumed[k])] == []
