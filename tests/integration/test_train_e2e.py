"""End to end through the real CLI: ``vaeforge train digits``, then ``sample`` and ``evaluate``."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

pytestmark = pytest.mark.integration

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def vaeforge(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vaeforge", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=600, **kwargs)


def run_in_terminal(*args: str) -> tuple[int, str]:
    """Run the CLI with standard error on a pseudo-terminal (so the progress bar shows); return (code, stderr)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 200, 0, 0))  # 40 rows, 200 columns
    process = subprocess.Popen([sys.executable, "-m", "vaeforge", *args], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return process.wait(timeout=600), b"".join(chunks).decode(errors="replace")


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("e2e") / "digits"
    code, terminal = run_in_terminal("train", "digits", "--run-dir", str(folder), "trainer.epochs=3",
                                     "trainer.log_every_n_steps=5")
    assert code == 0, terminal
    return folder, terminal


def test_the_run_folder_has_every_part(digits_run):
    folder, _ = digits_run
    for part in ("config.yaml", "metrics.jsonl", "train.log", "checkpoints", "plots", "samples"):
        assert (folder / part).exists(), part
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    steps_per_epoch = 26  # 1,617 training digits in batches of 64
    assert max(r["step"] for r in rows) == 3 * steps_per_epoch
    val = [r for r in rows if "val/loss" in r]
    assert [r["step"] for r in val] == [26, 52, 78]
    assert val[-1]["val/loss"] < val[0]["val/loss"]
    assert "stage main epoch 3 (step 78)" in (folder / "train.log").read_text()


def test_plots_and_samples_are_valid_images(digits_run):
    folder, _ = digits_run
    for name in ("loss", "recon", "kl"):
        path = folder / "plots" / f"{name}.png"
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        image = matplotlib.image.imread(path)
        assert image.shape[0] > 100 and image.shape[1] > 100
    grid = matplotlib.image.imread(folder / "samples" / "final.png")
    assert grid.shape[:2] == (8 * 9 + 1, 8 * 9 + 1)  # 64 digits of 8x8 with 1-pixel borders


def test_the_progress_bar_shows_live_metrics(digits_run):
    _, terminal = digits_run
    assert "Epoch 3: 100%" in terminal
    assert "26/26" in terminal
    for key in ("loss=", "kl=", "beta=", "val_loss=", "patience="):
        assert key in terminal, key
    assert "batch/s" in terminal or "s/batch" in terminal


def test_without_a_terminal_the_bar_is_quiet(tmp_path):
    result = vaeforge("train", "digits", "--run-dir", str(tmp_path / "quiet"), "trainer.epochs=1")
    assert result.returncode == 0, result.stderr
    assert "%|" not in result.stderr
    assert "run folder:" in result.stdout


def test_sample_writes_a_grid_and_an_array(digits_run, tmp_path):
    folder, _ = digits_run
    result = vaeforge("sample", str(folder), "-n", "16", "--out", str(tmp_path / "s.png"))
    assert result.returncode == 0, result.stderr
    assert matplotlib.image.imread(tmp_path / "s.png").shape[:2] == (4 * 9 + 1, 4 * 9 + 1)
    result = vaeforge("sample", str(folder), "-n", "10", "--out", str(tmp_path / "s.npy"))
    assert result.returncode == 0, result.stderr
    samples = np.load(tmp_path / "s.npy", allow_pickle=False)
    assert samples.shape == (10, 1, 8, 8) and set(np.unique(samples)) <= {0.0, 1.0}


def test_evaluate_prints_validation_metrics(digits_run):
    folder, _ = digits_run
    result = vaeforge("evaluate", str(folder))
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    best = min(r["val/loss"] for r in rows if "val/loss" in r)
    assert metrics["val/loss"] == pytest.approx(best, rel=1e-5)


def test_sample_rejects_a_bad_output_name(digits_run, tmp_path):
    folder, _ = digits_run
    result = vaeforge("sample", str(folder), "--out", str(tmp_path / "s.txt"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: --out {tmp_path / 's.txt'}: expected a .npy or .png file name"
