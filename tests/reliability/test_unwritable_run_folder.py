"""An unwritable run folder or a full disk is a clear error (exit code 2), never a silent success.

The tests run as root, for whom permission bits do not count, so they use
what stops root too: a regular file where a folder is expected, a read-only
mount and a small tmpfs that fills up (skipped where ``mount`` is not
permitted).
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from reliability_helpers import checkpoints, differences, tiny_config, train, write_config

from vaeforge.cli import main


@contextlib.contextmanager
def mounted(target: Path, *options: str, source: str = "tmpfs") -> Iterator[Path]:
    target.mkdir(parents=True, exist_ok=True)
    command = ["mount", *options, source, str(target)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (FileNotFoundError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot run mount: {exc}")
    if result.returncode != 0:
        pytest.skip(f"mount is not permitted here: {result.stderr.strip()}")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True, timeout=30)


def remount(target: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(target)], check=True, capture_output=True, timeout=30)


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def test_a_file_where_the_run_folder_should_be(tmp_path, capsys):
    config = write_config(tiny_config(), tmp_path / "tiny.yaml")
    blocker = tmp_path / "blocker"
    blocker.write_text("a regular file")
    code, err = run_cli(["train", str(config), "--run-dir", str(blocker / "run")], capsys)
    assert code == 2
    assert f"error: {blocker / 'run'}: cannot create the run folder: Not a directory" in err
    assert blocker.read_text() == "a regular file"


def test_a_read_only_file_system_at_the_start(tmp_path, capsys):
    config = write_config(tiny_config(), tmp_path / "tiny.yaml")
    with mounted(tmp_path / "ro", "-t", "tmpfs", "-o", "ro,size=1m") as ro:
        code, err = run_cli(["train", str(config), "--run-dir", str(ro / "run")], capsys)
        assert code == 2
        assert f"error: {ro / 'run'}: cannot create the run folder: Read-only file system" in err
        assert list(ro.iterdir()) == []


def test_resuming_in_a_read_only_run_folder(tmp_path, capsys, registry):
    run = tmp_path / "run"
    train(tiny_config(**{"trainer.epochs": 1}), run, registry)
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*")}
    with mounted(tmp_path / "view", "--bind", source=str(run)) as view:
        remount(view, "bind,ro")
        code, err = run_cli(["resume", str(view)], capsys)
    assert code == 2
    assert f"error: {view}: run folder is not writable: Read-only file system" in err
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*")} == before


def test_a_full_disk_at_the_start(tmp_path, capsys):
    config = write_config(tiny_config(), tmp_path / "tiny.yaml")
    with mounted(tmp_path / "small", "-t", "tmpfs", "-o", "size=64k") as small:
        (small / "run").mkdir()
        with open(small / "filler", "wb", buffering=0) as handle, contextlib.suppress(OSError):
            while True:
                handle.write(b"\0" * 4096)
        code, err = run_cli(["train", str(config), "--run-dir", str(small / "run")], capsys)
        assert code == 2
        assert f"error: {small / 'run'}: run folder is not writable: No space left on device" in err
        assert list((small / "run").iterdir()) == []


def test_a_disk_that_fills_up_mid_run_stops_it_and_the_run_resumes_exactly(tmp_path, capsys, registry):
    document = tiny_config()
    config = write_config(document, tmp_path / "tiny.yaml")
    reference = tmp_path / "reference"
    train(document, reference, registry)
    with mounted(tmp_path / "small", "-t", "tmpfs", "-o", "size=160k") as small:
        run = small / "run"
        code, err = run_cli(["train", str(config), "--run-dir", str(run)], capsys)
        assert code == 2, err
        assert "error: cannot write checkpoint" in err and "No space left on device" in err, err
        saved = checkpoints(run)
        assert saved, "some checkpoints fit before the disk filled up"
        assert not [p for p in run.rglob(".tmp-*")], "a failed write leaves no temporary folder"
        remount(small, "size=8m")  # space again: the run continues from its last complete checkpoint
        code, err = run_cli(["resume", str(run)], capsys)
        assert code == 0, err
        assert differences(reference, run) == []


HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
os.write(fd, b"4242")
fcntl.lockf(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(120)
"""


def test_a_second_process_on_the_same_run_is_refused(tmp_path, capsys, registry):
    """While one process trains a run, ``resume`` (or ``train``) of the same folder stops with exit code 2."""
    import sys

    run = tmp_path / "run"
    train(tiny_config(**{"trainer.epochs": 1}), run, registry)
    assert not (run / ".vaeforge.lock").exists(), "the lock goes away with the process that held it"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run / ".vaeforge.lock")], stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"locked\n"
        before = sorted(p.name for p in (run / "checkpoints").iterdir())
        code, err = run_cli(["resume", str(run)], capsys)
        assert code == 2
        assert f"error: {run}: another vaeforge process (pid 4242) is training this run" in err
        assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before
        config = write_config(tiny_config(), tmp_path / "tiny.yaml")
        code, err = run_cli(["train", str(config), "--run-dir", str(run)], capsys)
        assert code == 2 and "another vaeforge process (pid 4242)" in err
    finally:
        holder.kill()
        holder.wait()
    code, err = run_cli(["resume", str(run)], capsys)  # the lock file a killed process leaves does not count
    assert code == 0, err


FORK_AND_DIE = """
import os, sys, time
from vaeforge.run import run_lock
with run_lock(sys.argv[1]):
    if os.fork() == 0:  # like a DataLoader worker: forked while the lock is held, outlives its parent a while
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
        time.sleep(15)
        os._exit(0)
    print("forked", flush=True)
    os._exit(0)  # killed, as far as the lock is concerned
"""


def test_the_lock_dies_with_its_process_even_when_a_forked_child_lives_on(tmp_path):
    import sys

    from vaeforge.run import run_lock

    run = tmp_path / "run"
    result = subprocess.run([sys.executable, "-c", FORK_AND_DIE, str(run)], capture_output=True, timeout=60)
    assert result.stdout == b"forked\n", result.stderr.decode()
    with run_lock(run):  # the child still has the file open, but not the lock
        pass
