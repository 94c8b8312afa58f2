"""Run folders: creating one safely, training in it, resuming it, reading it back.

A run folder holds ``config.yaml`` (the fully resolved config),
``metrics.jsonl``, ``checkpoints/``, ``plots/``, ``samples/`` and
``train.log``. Nothing is created before the config has loaded, and a write
probe makes an unwritable folder an error at the start, not at the first
checkpoint. While a process trains a run it holds a lock on
``.vaeforge.lock`` in the folder (a POSIX record lock: released by the kernel
even on kill -9, and not inherited by DataLoader workers, which may outlive
their parent for a few seconds), so a second ``train`` or ``resume`` of the
same run is refused instead of corrupting it.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from vaeforge.config import RunConfig, config_to_yaml, load_config
from vaeforge.errors import RunFolderError
from vaeforge.registry import Registry

if TYPE_CHECKING:
    from vaeforge.trainer.loop import Trainer

log = logging.getLogger("vaeforge")


def default_run_dir(config: RunConfig, base: Path | None = None) -> Path:
    """``runs/<name>/<timestamp>`` under ``base`` (the working directory by default)."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = (base or Path.cwd()) / "runs" / config.name / stamp
    suffix = 1
    while folder.exists():
        suffix += 1
        folder = folder.with_name(f"{stamp}-{suffix}")
    return folder


def probe_writable(folder: Path) -> None:
    """Create and remove a file in ``folder``; a failure is a RunFolderError naming the folder."""
    probe = folder / ".vaeforge-write-probe"
    try:
        with open(probe, "wb") as handle:
            handle.write(b"x" * 4096)
            handle.flush()
            os.fsync(handle.fileno())
        probe.unlink()
    except OSError as exc:
        with contextlib.suppress(OSError):
            probe.unlink(missing_ok=True)  # a full disk creates the file, then refuses its bytes
        raise RunFolderError(f"{folder}: run folder is not writable: {exc.strerror or exc}") from None


LOCK = ".vaeforge.lock"


@contextlib.contextmanager
def run_lock(folder: Path) -> Iterator[None]:
    """Hold the run's lock (creating the folder); another process holding it is a RunFolderError.

    Where ``fcntl`` is missing (Windows) there is no lock.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunFolderError(f"{folder}: cannot create the run folder: {exc.strerror or exc}") from None
    try:
        fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise RunFolderError(f"{folder}: run folder is not writable: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held = os.fstat(fd).st_ino == os.stat(folder / LOCK).st_ino  # not a lock file being removed
        except OSError:
            held = False
        if not held:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip()
            raise RunFolderError(f"{folder}: another vaeforge process{f' (pid {owner})' if owner else ''} is "
                                 "training this run; wait for it to end or stop it first")
        with contextlib.suppress(OSError):  # the pid is only for the message above; a full disk may refuse it
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                (folder / LOCK).unlink()
    finally:
        os.close(fd)


def prepare_run_dir(folder: Path, config: RunConfig) -> Path:
    """Create a new run folder and write its ``config.yaml``; refuses a folder that already holds a run."""
    from vaeforge.checkpoint import fsync_dir

    folder = Path(folder)
    if (folder / "config.yaml").exists():
        raise RunFolderError(f"{folder}: already holds a run; continue it with 'vaeforge resume {folder}' "
                             "or choose another --run-dir")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunFolderError(f"{folder}: cannot create the run folder: {exc.strerror or exc}") from None
    probe_writable(folder)
    tmp = folder / ".config.yaml.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(config_to_yaml(config))
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(folder / "config.yaml")
        fsync_dir(folder)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise RunFolderError(f"{folder / 'config.yaml'}: cannot write: {exc.strerror or exc}") from None
    return folder


def attach_train_log(folder: Path) -> logging.Handler:
    """Send the ``vaeforge`` logger's messages (INFO and up) to ``<folder>/train.log``."""
    handler = logging.FileHandler(folder / "train.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    handler.setLevel(logging.INFO)
    logger = logging.getLogger("vaeforge")
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    return handler


def load_run_config(folder: Path, registry: Registry) -> RunConfig:
    """The config of an existing run folder."""
    path = Path(folder) / "config.yaml"
    if not path.is_file():
        raise RunFolderError(f"{folder}: not a run folder (no config.yaml)")
    return load_config(path, registry)


def train(config: RunConfig, registry: Registry, folder: Path, device: str | None = None) -> dict[str, float]:
    """Train ``config`` in a new run folder; returns the final metrics."""
    from vaeforge.trainer.loop import Trainer

    trainer = Trainer(config, registry, folder, device=device)  # every build error before anything is written
    if not trainer.is_main:  # in a torchrun run, rank 0 owns the run folder
        return _fit(trainer, f"training {config.name} in {folder}")
    with run_lock(folder):
        prepare_run_dir(folder, config)
        return _fit(trainer, f"training {config.name} in {folder}")


def _fit(trainer: Trainer, message: str, checkpoint: Path | None = None) -> dict[str, float]:
    """Load ``checkpoint`` (if any) and train, with ``train.log`` attached on rank 0."""
    from vaeforge import distributed

    handler = attach_train_log(trainer.run_dir) if trainer.is_main else None
    try:
        log.info(message)
        if checkpoint is not None:
            trainer.load_checkpoint(checkpoint)
        return trainer.fit()
    finally:
        if handler is not None:
            logging.getLogger("vaeforge").removeHandler(handler)
            handler.close()
        distributed.shutdown()


def resume(folder: Path, registry: Registry, device: str | None = None) -> dict[str, float]:
    """Continue the run in ``folder`` from its newest complete checkpoint.

    A run killed before its first checkpoint (the ``start`` one, written
    before any step) has produced nothing yet and starts from the beginning.
    A run whose checkpoints are all incomplete or damaged is an error.
    """
    from vaeforge import checkpoint
    from vaeforge.trainer.loop import Trainer

    folder = Path(folder)
    config = load_run_config(folder, registry)
    trainer = Trainer(config, registry, folder, device=device)
    with run_lock(folder) if trainer.is_main else contextlib.nullcontext():
        root = folder / "checkpoints"
        if trainer.is_main:
            probe_writable(folder)
            checkpoint.sweep_temporaries(root)  # leftovers of the killed process's interrupted writes
            checkpoint.repair_best(root)  # killed between writing the best checkpoint and pointing 'best' at it
        latest = checkpoint.find_latest(root)
        if latest is None and checkpoint.has_step_folders(root):
            raise RunFolderError(f"{folder}: no complete checkpoint to resume from in {root}; "
                                 "every one is incomplete or damaged (see the warnings above)")
        if latest is None:
            return _fit(trainer, f"resuming {config.name}: no checkpoint yet, starting from the beginning")
        return _fit(trainer, f"resuming {config.name} from {latest.relative_to(folder)}", latest)
