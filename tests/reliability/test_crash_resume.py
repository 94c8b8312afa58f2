"""Kill -9 a training process at two dozen random moments; resumed each time, it ends bit for bit as if never killed.

The run is a 2-stage pipeline of 200 steps (25 epochs of 8 batches) with
EMA, a scheduler, a KL ramp, validation every epoch, a checkpoint every 2
steps and after every epoch, ``keep_last: 3`` and a ``best`` link, so kills
land in steps, in validation, in checkpoint writes, in pruning, in moving
``best``, at the stage boundary and while a resumed process starts up.

The uninterrupted reference is a real ``python -m vaeforge train``
subprocess. The killed processes are forked from a server that has already
imported torch (see ``zygote.py``) and run the same ``vaeforge.cli.main``,
which keeps two dozen process starts affordable on a busy machine.

After every kill, before resuming: every ``step-*`` folder must be a complete,
verified checkpoint (only ``.tmp-*`` / ``.trash-*`` names may be partial),
and ``best`` must name a complete one. At the end: ``torch.equal`` on every
model, EMA, optimizer, scheduler and RNG tensor, the same values in every
metrics file, and the same ``best`` checkpoint as the uninterrupted run.

The negative control kills a second run three times and resumes it with the
checkpoint's random generator states ignored: the same comparison must fail.
"""

from __future__ import annotations

import json
import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from reliability_helpers import differences, tiny_config, write_config

from vaeforge import checkpoint as ckpt

pytestmark = [pytest.mark.slow, pytest.mark.integration,
              pytest.mark.skipif(not hasattr(os, "fork"), reason="the fork server needs os.fork")]

HERE = Path(__file__).parent
SEED = 20261122
KILLS = 24
METRIC_FILES = ("metrics.jsonl", "metrics_frozen.jsonl", "metrics_full.jsonl")


def crash_config() -> dict:
    return tiny_config(**{
        "trainer.epochs": 1,
        "callbacks": [{"name": "checkpoint", "params": {"every_n_steps": 2, "keep_last": 3, "save_best": True}}],
        "stages": [
            {"name": "frozen", "epochs": 12, "freeze": ["decoder"]},
            {"name": "full", "epochs": 13, "unfreeze": ["decoder"],
             "optimizer": {"name": "adamw", "params": {"lr": 0.005}}},
        ],
    })


class Zygote:
    """Client of ``zygote.py``: start CLI processes, learn when they end."""

    def __init__(self, env: dict[str, str]):
        self.proc = subprocess.Popen([sys.executable, str(HERE / "zygote.py")], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=env)
        self.buffer = b""

    def _message(self, timeout: float | None) -> dict | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = None if deadline is None else max(deadline - time.monotonic(), 0)
            if not select.select([self.proc.stdout], [], [], left)[0]:
                return None
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                raise RuntimeError(f"the fork server exited ({self.proc.wait()})")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def ready(self) -> None:
        assert "ready" in self._message(timeout=300)

    def start(self, argv: list[str], log: Path, patch: str | None = None) -> int:
        self.proc.stdin.write(json.dumps({"argv": argv, "log": str(log), "patch": patch}).encode() + b"\n")
        self.proc.stdin.flush()
        return self._message(timeout=60)["pid"]

    def exit_code(self, timeout: float | None) -> int | None:
        message = self._message(timeout)
        return None if message is None else message["exit"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def newest_step(run_dir: Path) -> int:
    steps = [step for step, _ in ckpt.step_folders(run_dir / "checkpoints")]
    return max(steps, default=-1)


def writing(run_dir: Path) -> bool:
    """True while a checkpoint folder is being written (its temporary sibling exists)."""
    root = run_dir / "checkpoints"
    try:
        folders = [root, *(root / name for name in os.listdir(root) if not name.startswith((".", "step-", "best")))]
        return any(name.startswith(".tmp-step-") for folder in folders for name in os.listdir(folder))
    except FileNotFoundError:
        return False


def check_nothing_partial_is_a_checkpoint(run_dir: Path) -> dict[str, int]:
    """Every step folder loads and verifies; returns the leftovers of interrupted writes by kind."""
    root = run_dir / "checkpoints"
    leftovers = {"tmp-step": 0, "tmp-best": 0, "trash": 0}
    for folder in [root, *(p for p in root.iterdir() if p.is_dir() and not p.is_symlink())] if root.is_dir() else []:
        for entry in folder.iterdir():
            if entry.name.startswith(".tmp-step-"):
                leftovers["tmp-step"] += 1
            elif entry.name.startswith(".tmp-best"):
                leftovers["tmp-best"] += 1
            elif entry.name.startswith(".trash-"):
                leftovers["trash"] += 1
    for _, path in ckpt.step_folders(root):
        ckpt.load_checkpoint(path)  # raises on anything incomplete, tampered or non-finite
    best = root / "best"
    if best.is_symlink() or best.exists():
        ckpt.load_checkpoint(best)
    latest = ckpt.find_latest(root)
    assert latest is None or not latest.name.startswith(".")
    return leftovers


def test_sigkill_at_random_moments_then_resume_ends_bit_for_bit(tmp_path):
    started = time.monotonic()
    config = write_config(crash_config(), tmp_path / "crash.yaml")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    reference_dir, crash_dir = tmp_path / "reference", tmp_path / "crashed"
    reference = subprocess.Popen([sys.executable, "-m", "vaeforge", "train", str(config), "--run-dir",
                                  str(reference_dir)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    zygote = Zygote(env)
    log = tmp_path / "crashed.log"
    rng = random.Random(SEED)
    kills: list[dict] = []
    try:
        zygote.ready()
        pid = zygote.start(["train", str(config), "--run-dir", str(crash_dir)], log)
        launched = time.monotonic()
        while len(kills) < KILLS:
            before, mode = newest_step(crash_dir), rng.random()
            if mode < 0.15:  # anywhere, start-up and loading included
                code = zygote.exit_code(timeout=rng.uniform(0.0, 0.4) - (time.monotonic() - launched))
            elif mode < 0.5:  # after a few more steps, as soon as a checkpoint is being written
                target, code = before + rng.randint(1, 6), None
                while code is None and not (newest_step(crash_dir) >= target and writing(crash_dir)):
                    code = zygote.exit_code(timeout=0.001)
            else:  # after a few more steps, at a random point of the step / checkpoint cycle
                target, code = before + rng.randint(1, 8), None
                while code is None and newest_step(crash_dir) < target:
                    code = zygote.exit_code(timeout=0.005)
                if code is None:
                    code = zygote.exit_code(timeout=rng.uniform(0.0, 0.06))
            if code is None:
                os.kill(pid, signal.SIGKILL)
                code = zygote.exit_code(timeout=60)
            if code != -signal.SIGKILL:  # it ended on its own before the kill
                break
            leftovers = check_nothing_partial_is_a_checkpoint(crash_dir)
            kills.append({"newest_step_before": before, "newest_step_after": newest_step(crash_dir), **leftovers})
            pid = zygote.start(["resume", str(crash_dir)], log)
            launched = time.monotonic()
        else:
            code = zygote.exit_code(timeout=300)
        assert code == 0, f"exit code {code} after {len(kills)} kills {kills}:\n{log.read_text()[-3000:]}"
        control_dir = tmp_path / "control"
        run_control(zygote, config, control_dir, tmp_path / "control.log", rng)
    finally:
        zygote.close()
    output, _ = reference.communicate(timeout=600)
    assert reference.returncode == 0, output.decode()[-3000:]

    in_writes = sum(1 for k in kills if k["tmp-step"])
    summary = (f"{len(kills)} kills in {time.monotonic() - started:.0f} s; {in_writes} during a checkpoint write, "
               f"{sum(1 for k in kills if k['trash'])} during a prune, {sum(1 for k in kills if k['tmp-best'])} "
               f"while moving best; {sum(1 for k in kills if k['newest_step_before'] < 0)} before the first checkpoint")
    print(summary)
    assert len(kills) >= 20, f"{summary}: {kills}"
    assert in_writes >= 2, f"{summary}: {kills}"
    assert "resuming tiny from checkpoints/" in (crash_dir / "train.log").read_text()
    assert differences(reference_dir, crash_dir, METRIC_FILES) == [], f"{summary}: {kills}\n{log.read_text()[-3000:]}"
    best = [ckpt.load_checkpoint(run / "checkpoints" / "best") for run in (reference_dir, crash_dir)]
    assert best[0]["manifest"]["step"] == best[1]["manifest"]["step"]
    assert all(torch.equal(best[0]["model"][k], best[1]["model"][k]) for k in best[0]["model"])
    samples = sorted(p.relative_to(reference_dir) for p in reference_dir.glob("samples/*"))
    assert samples == sorted(p.relative_to(crash_dir) for p in crash_dir.glob("samples/*"))
    assert all((crash_dir / p).read_bytes() == (reference_dir / p).read_bytes() for p in samples)
    # the negative control: the same kills and comparison, but resuming without the RNG states, must differ
    found = differences(reference_dir, control_dir, METRIC_FILES)
    assert any(line.startswith("model/") for line in found), found
    assert any(line.startswith("metrics.jsonl") for line in found), found


def run_control(zygote: Zygote, config: Path, run_dir: Path, log: Path, rng: random.Random) -> None:
    """Train, kill -9 three times mid-run, resume each time ignoring the checkpoint's RNG states."""
    pid = zygote.start(["train", str(config), "--run-dir", str(run_dir)], log)
    for _ in range(3):
        target, code = newest_step(run_dir) + rng.randint(10, 30), None
        while code is None and newest_step(run_dir) < target:
            code = zygote.exit_code(timeout=0.005)
        assert code is None, log.read_text()[-3000:]
        os.kill(pid, signal.SIGKILL)
        assert zygote.exit_code(timeout=60) == -signal.SIGKILL
        pid = zygote.start(["resume", str(run_dir)], log, patch="no-rng")
    assert zygote.exit_code(timeout=300) == 0, log.read_text()[-3000:]
