"""A torchrun run of two CPU processes (gloo), resumed mid-epoch, ends bit for bit as if uninterrupted.

Each rank draws its own noise (the VAE's reparameterisation), so each rank's
random generator states must come back: rank 0 writes every rank's.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from reliability_helpers import checkpoints, copy_until, differences, tiny_config, write_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TORCHRUN = shutil.which("torchrun", path=str(Path(sys.executable).parent))


def torchrun(*args: str, cwd: Path) -> None:
    command = [TORCHRUN, "--standalone", "--nnodes=1", "--nproc-per-node=2", "-m", "vaeforge", *args]
    result = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300, cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.skipif(TORCHRUN is None, reason="torchrun is not installed beside this Python")
def test_a_two_process_run_resumes_bit_for_bit(tmp_path):
    config = write_config(tiny_config(**{"trainer.epochs": 2}), tmp_path / "ddp.yaml")
    torchrun("train", str(config), "--run-dir", str(tmp_path / "reference"), cwd=tmp_path)
    reference = tmp_path / "reference"
    # 63 examples -> 31 per rank -> 4 batches per epoch; step 6 is inside the second epoch
    middle = next(p for p in checkpoints(reference) if p.name == "step-00000006")
    copy = copy_until(reference, tmp_path / "resumed", middle)
    torchrun("resume", str(copy), cwd=tmp_path)
    assert differences(reference, copy) == []
