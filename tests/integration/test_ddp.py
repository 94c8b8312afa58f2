"""Real ``torchrun`` with two CPU processes (gloo): sharded data, rank-0 logging, agreed step skipping."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TORCHRUN = shutil.which("torchrun", path=str(Path(sys.executable).parent))


def torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    command = [TORCHRUN, "--standalone", "--nnodes=1", "--nproc-per-node=2", "-m", "vaeforge", *args]
    return subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=180, cwd=cwd)


def write_config(tmp_path: Path, data: dict) -> Path:
    config = {
        "name": "ddp",
        "data": data,
        "model": {"name": "mlp_vae", "params": {"latent_dim": 2, "hidden": [16]}},
        "losses": [{"name": "mse_recon"}, {"name": "kl"}],
        "optimizer": {"name": "adam", "params": {"lr": 0.01}},
        "trainer": {"epochs": 3, "log_every_n_steps": 2},
        "loggers": [{"name": "jsonl"}],
    }
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.skipif(TORCHRUN is None, reason="torchrun is not installed beside this Python")
def test_two_processes_train_their_shards_and_only_rank_0_writes(tmp_path):
    config = write_config(tmp_path, {"name": "synthetic", "params": {"num_examples": 256, "dim": 8}, "batch_size": 32})
    result = torchrun("train", str(config), "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    # 230 training examples -> 115 per rank -> 4 batches of 32 per epoch on each rank
    assert max(r["step"] for r in rows) == 12
    assert [r["step"] for r in rows if "val/loss" in r] == [4, 8, 12]
    assert not (tmp_path / "runs").exists()  # rank 1 created no default run folder of its own


@pytest.mark.skipif(TORCHRUN is None, reason="torchrun is not installed beside this Python")
def test_a_nan_on_one_rank_makes_both_ranks_skip_without_hanging(tmp_path):
    x = np.random.default_rng(0).normal(size=(200, 8)).astype(np.float32)
    x[17] = np.nan  # one poisoned example: each epoch it lands in exactly one rank's shard
    np.save(tmp_path / "x.npy", x)
    data = {"name": "tensor_file", "params": {"path": str(tmp_path / "x.npy"), "val_fraction": 0.0},
            "batch_size": 25}
    config = write_config(tmp_path, data)
    result = torchrun("train", str(config), "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    skipped = [r["train/skipped_steps"] for r in rows if "train/skipped_steps" in r]
    assert skipped[-1] == 3.0  # one skipped step per epoch, whichever rank held the NaN
    assert all(np.isfinite(r["train/loss"]) for r in rows if "train/loss" in r)
