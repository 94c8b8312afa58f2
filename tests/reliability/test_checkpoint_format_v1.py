"""A run folder written in checkpoint format 1 (``tests/fixtures/checkpoint_v1``) keeps loading and working."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from vaeforge import checkpoint as ckpt
from vaeforge.cli import main

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "checkpoint_v1"
CHECKPOINT = FIXTURE / "checkpoints" / "step-00000004"


@pytest.fixture
def run(tmp_path):
    copy = tmp_path / "checkpoint_v1"
    shutil.copytree(FIXTURE, copy)
    return copy


def test_the_fixture_is_format_1_and_unchanged():
    manifest = json.loads((CHECKPOINT / "manifest.json").read_text())
    assert manifest["format_version"] == 1
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((CHECKPOINT / name).read_bytes()).hexdigest() == digest, name
    assert sum(p.stat().st_size for p in FIXTURE.rglob("*") if p.is_file()) < 200_000


def test_it_loads_with_every_part_in_place():
    loaded = ckpt.load_checkpoint(CHECKPOINT)
    assert set(loaded["model"]) == {"encoder.0.weight", "encoder.0.bias", "encoder.2.weight", "encoder.2.bias",
                                    "decoder.0.weight", "decoder.0.bias", "decoder.2.weight", "decoder.2.bias"}
    assert set(loaded["ema"]) == set(loaded["model"])
    state = loaded["state"]
    assert state["progress"]["global_step"] == 4 and state["progress"]["epoch"] == 1
    assert set(state["rng"]) >= {"python", "numpy", "torch"}
    assert state["optimizer"]["state"][0]["exp_avg"].dtype == torch.float32
    assert ckpt.find_latest(FIXTURE / "checkpoints") == CHECKPOINT


def test_evaluate_and_sample_work_on_it(run, tmp_path, capsys):
    assert main(["evaluate", str(run), "--checkpoint", "last"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["step"] == 4.0 and np.isfinite(metrics["val/loss"])
    out = tmp_path / "samples.npy"
    assert main(["sample", str(run), "-n", "5", "--out", str(out)]) == 0
    samples = np.load(out, allow_pickle=False)
    assert samples.shape == (5, 4) and np.isfinite(samples).all()


def test_resume_continues_it_to_the_end(run, capsys):
    assert main(["resume", str(run)]) == 0, capsys.readouterr().err
    latest = ckpt.find_latest(run / "checkpoints")
    manifest = json.loads((latest / "manifest.json").read_text())
    assert manifest["finished"] is True and manifest["step"] == 12
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert records[: len(FIXTURE.joinpath("metrics.jsonl").read_text().splitlines())] == [
        json.loads(line) for line in FIXTURE.joinpath("metrics.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in records) == 12
