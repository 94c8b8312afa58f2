"""Helpers for tests that run the real ``vaeforge`` command line.

``run_cli`` calls :func:`vaeforge.cli.main` in-process (fast: torch and the
registry are imported once per test session); ``spawn_cli`` starts
``python -m vaeforge`` as a subprocess, exactly as a user's shell would, and
``finish`` waits for several of them at once so they overlap.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import attrs
import pytest

from vaeforge.cli import main


@attrs.frozen
class Result:
    """What one command run produced."""

    code: int
    out: str
    err: str

    @property
    def errors(self) -> list[str]:
        """The ``error: `` lines of standard error, without the prefix."""
        return [line.removeprefix("error: ") for line in self.err.splitlines() if line.startswith("error: ")]


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> Result:
    """``vaeforge <args>`` in this process; SystemExit (from argparse) becomes the exit code."""
    try:
        code = main(list(args))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 2
    out, err = capsys.readouterr()
    return Result(code, out, err)


def cli_env(pythonpath: Sequence[Path] = (), **variables: str) -> dict[str, str]:
    """The environment for a subprocess: this one, plus ``PYTHONPATH`` entries and ``variables``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAEFORGE_")}
    paths = [str(p) for p in pythonpath] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    env.update(variables)
    return env


def spawn_cli(*args: str, cwd: Path, env: Mapping[str, str]) -> subprocess.Popen[str]:
    """Start ``python -m vaeforge <args>``; collect it with :func:`finish`."""
    return subprocess.Popen([sys.executable, "-m", "vaeforge", *args], cwd=cwd, env=dict(env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen[str], timeout: float = 120) -> Result:
    """Wait for a process started by :func:`spawn_cli`."""
    out, err = process.communicate(timeout=timeout)
    return Result(process.returncode, out, err)
