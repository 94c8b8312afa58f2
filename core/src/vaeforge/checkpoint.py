"""Crash-safe checkpoints: safetensors for tensors, JSON for structure, no pickle anywhere.

A checkpoint is a folder::

    step-00000123/
      model.safetensors     the model's state_dict (loadable by any safetensors reader)
      ema.safetensors       the EMA weights, when EMA is on
      state.safetensors     every other tensor (optimizer, RNG, callbacks, ...)
      state.json            the structure and scalars, with references into state.safetensors
      manifest.json         format version, step, and the sha256 of every other file; written last

It is written into a temporary sibling folder (``.tmp-step-00000123-<pid>``);
every file is fsynced, the manifest last, then the folder is renamed into
place and the parent folder fsynced. A folder without a valid manifest is
therefore never a checkpoint, and a kill at any moment leaves either the old
set of checkpoints or the old set plus one complete new one. Two checkpoints
of the same step (say after the last step of an epoch and after the end of
the run) are ``step-00000123`` and ``step-00000123-1``; the later one wins.

Deleting goes the other way round: a folder is first renamed to a
``.trash-*`` name, then removed, so a half-deleted checkpoint never looks
like one. ``best`` is a symbolic link to a step folder, replaced atomically.

Loading reads each file once (regular files only), checks its sha256 against
the manifest, parses tensors with safetensors (which validates offsets and
header size) and JSON with the standard library, and rejects non-finite
floating tensors by name. Every problem is a :class:`CheckpointError` that
names the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import stat
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from vaeforge.errors import CheckpointError

FORMAT_VERSION = 1
"""The checkpoint format written by this version; every older version still loads."""

MANIFEST = "manifest.json"
BEST = "best"
FILES = ("model.safetensors", "ema.safetensors", "state.safetensors", "state.json")
"""The only file names a manifest may list."""
REQUIRED = ("model.safetensors", "state.safetensors", "state.json")

_STEP_DIR = re.compile(r"^step-(\d+)(?:-(\d+))?$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_MAX_MANIFEST_BYTES = 1024 * 1024
_MAX_JSON_BYTES = 256 * 1024 * 1024
_NDARRAY_KINDS = "biuf"


# -- Nested state <-> (JSON skeleton, flat tensors) -------------------------------------


def flatten_state(tree: Any) -> tuple[Any, dict[str, torch.Tensor]]:
    """Split a nested state into a JSON-able skeleton and a flat ``{key: tensor}`` mapping.

    Handles dicts (any JSON-able keys), lists, tuples, tensors, numpy arrays,
    numbers, strings, booleans and None; anything else is a TypeError.
    """
    tensors: dict[str, torch.Tensor] = {}

    def walk(node: Any) -> Any:
        if isinstance(node, torch.Tensor):
            key = f"t{len(tensors)}"
            tensors[key] = node.detach().to("cpu").contiguous().clone()
            return {"__tensor__": key}
        if isinstance(node, np.ndarray):
            if node.dtype.kind not in _NDARRAY_KINDS:
                raise TypeError(f"cannot checkpoint a numpy array of dtype {node.dtype}")
            key = f"t{len(tensors)}"
            wide = np.float64 if node.dtype.kind == "f" else np.int64
            tensors[key] = torch.from_numpy(np.ascontiguousarray(node).astype(wide))
            return {"__ndarray__": key, "dtype": node.dtype.str}
        if isinstance(node, Mapping):
            if all(isinstance(k, str) and not k.startswith("__") for k in node):
                return {k: walk(v) for k, v in node.items()}
            return {"__items__": [[k, walk(v)] for k, v in node.items()]}
        if isinstance(node, tuple):
            return {"__tuple__": [walk(v) for v in node]}
        if isinstance(node, list):
            return [walk(v) for v in node]
        if isinstance(node, np.generic):
            return node.item()
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        raise TypeError(f"cannot checkpoint a {type(node).__name__}; use tensors, numbers, strings, lists and dicts")

    return walk(tree), tensors


def unflatten_state(skeleton: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    """Invert :func:`flatten_state`; a skeleton that does not fit is a CheckpointError."""

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if "__tensor__" in node:
                return tensors[node["__tensor__"]]
            if "__ndarray__" in node:
                dtype = np.dtype(node["dtype"])
                if dtype.kind not in _NDARRAY_KINDS:
                    raise ValueError(f"numpy dtype {dtype} is not allowed")
                return tensors[node["__ndarray__"]].numpy().astype(dtype)
            if "__items__" in node:
                return {_key(k): walk(v) for k, v in node["__items__"]}
            if "__tuple__" in node:
                return tuple(walk(v) for v in node["__tuple__"])
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    try:
        return walk(skeleton)
    except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as exc:
        raise CheckpointError(f"state.json does not fit state.safetensors ({type(exc).__name__}: {exc})") from None


def _key(key: Any) -> Any:
    if isinstance(key, list):  # a tuple key came back from JSON as a list
        return tuple(key)
    return key


# -- Random number generators -----------------------------------------------------------


def capture_rng() -> dict[str, Any]:
    """The state of Python's, NumPy's, torch's and (if present) CUDA's global generators."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    """Restore :func:`capture_rng` output."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(tuple(state["numpy"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():  # as many devices as both machines have
        for index, device_state in enumerate(list(state["cuda"])[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(device_state, index)


# -- Writing ------------------------------------------------------------------------------


def _write_synced(path: Path, data: bytes) -> str:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return hashlib.sha256(data).hexdigest()


def fsync_dir(path: Path) -> None:
    """fsync a directory so a rename inside it is durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except (PermissionError, IsADirectoryError):  # Windows
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dirs(folder: Path) -> None:
    """``mkdir -p`` that fsyncs each parent whose entries changed."""
    missing = []
    probe = folder
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for path in reversed(missing):
        path.mkdir(exist_ok=True)
        fsync_dir(path.parent)


def save_checkpoint(
    folder: Path,
    *,
    model: Mapping[str, torch.Tensor],
    state: Any,
    ema: Mapping[str, torch.Tensor] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write one checkpoint atomically into ``folder`` (which must not exist yet).

    :param folder: the final folder, e.g. ``checkpoints/main/step-00000123``.
    :param model: the model's state_dict.
    :param state: everything else, as a nested state (see :func:`flatten_state`).
    :param ema: the EMA model's state_dict, if any.
    :param meta: extra JSON-able facts recorded in the manifest (step, stage, metrics).
    :returns: ``folder``.
    :raises CheckpointError: when the disk refuses the write (the message names the path).
    """
    folder = Path(folder)
    parent = folder.parent
    tmp = parent / f".tmp-{folder.name}-{os.getpid()}"
    skeleton, tensors = flatten_state(state)
    files: dict[str, bytes] = {
        "model.safetensors": save_safetensors(_plain_tensors(model)),
        "state.safetensors": save_safetensors(tensors),
        "state.json": json.dumps(skeleton).encode(),
    }
    if ema is not None:
        files["ema.safetensors"] = save_safetensors(_plain_tensors(ema))
    if len(files["state.json"]) > _MAX_JSON_BYTES:  # never write a checkpoint that would not load
        raise CheckpointError(f"cannot write checkpoint {folder}: state.json would be {len(files['state.json'])} "
                              f"bytes, more than the {_MAX_JSON_BYTES} a checkpoint may hold; keep large state "
                              "in tensors, not in lists of numbers")
    try:
        _make_dirs(parent)
        if folder.exists() or folder.is_symlink():
            raise FileExistsError(17, "a checkpoint of that name already exists")
        _remove_path(tmp)
        tmp.mkdir()
        hashes = {name: _write_synced(tmp / name, data) for name, data in files.items()}
        from vaeforge import __version__

        manifest = {"format_version": FORMAT_VERSION, "vaeforge": __version__, **dict(meta or {}), "files": hashes}
        _write_synced(tmp / MANIFEST, json.dumps(manifest, indent=1).encode())
        fsync_dir(tmp)
        os.rename(tmp, folder)
        fsync_dir(parent)
    except OSError as exc:
        _remove_path(tmp)
        raise CheckpointError(f"cannot write checkpoint {folder}: {exc.strerror or exc}") from None
    return folder


def _plain_tensors(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def step_folder_name(step: int, seq: int = 0) -> str:
    """``step-00000123``, or ``step-00000123-<seq>`` for a later checkpoint of the same step."""
    return f"step-{step:08d}" + (f"-{seq}" if seq else "")


def next_step_folder(parent: Path, step: int) -> Path:
    """The name for a new checkpoint of ``step`` in ``parent``: after every existing one of that step."""
    taken = [seq for (s, seq), _ in _step_entries(parent) if s == step]
    return Path(parent) / step_folder_name(step, max(taken) + 1 if taken else 0)


# -- Reading ------------------------------------------------------------------------------


def _read_regular(path: Path, limit: int | None = None, what: str = "") -> bytes:
    """The bytes of a regular file (no FIFOs, devices or symbolic links), at most ``limit`` bytes."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing{what}") from None
    except OSError as exc:
        if path.is_symlink():
            raise CheckpointError(f"{path}: is a symbolic link; checkpoint files must be regular files") from None
        raise CheckpointError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise CheckpointError(f"{path}: not a regular file")
        if limit is not None and info.st_size > limit:
            raise CheckpointError(f"{path}: {info.st_size} bytes, larger than the {limit} allowed")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read()
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def _parse_json(raw: bytes, path: Path) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise CheckpointError(f"{path}: not valid JSON") from None


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of a checkpoint folder, checked for shape, version and file names."""
    path = Path(folder) / MANIFEST
    if not (Path(folder) / MANIFEST).exists() and not path.is_symlink():
        raise CheckpointError(f"{folder}: not a complete checkpoint (no {MANIFEST})")
    manifest = _parse_json(_read_regular(path, _MAX_MANIFEST_BYTES), path)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise CheckpointError(f"{path}: not a vaeforge checkpoint manifest (no 'files' mapping)")
    version = manifest.get("format_version")
    if type(version) is not int or not 1 <= version <= FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version!r} is not supported "
            f"(this vaeforge reads 1 to {FORMAT_VERSION})"
        )
    for name, digest in manifest["files"].items():
        if name not in FILES:
            raise CheckpointError(f"{path}: invalid file name {name!r} in the manifest (allowed: {', '.join(FILES)})")
        if not isinstance(digest, str) or not _SHA256.match(digest):
            raise CheckpointError(f"{path}: the sha256 of {name} is not 64 lower-case hex digits")
    for required in REQUIRED:
        if required not in manifest["files"]:
            raise CheckpointError(f"{path}: the manifest does not list {required}")
    return manifest


def _verified_bytes(folder: Path, name: str, manifest: Mapping[str, Any], limit: int | None = None) -> bytes:
    path = Path(folder) / name
    data = _read_regular(path, limit, what=" (listed in the manifest)")
    if hashlib.sha256(data).hexdigest() != manifest["files"][name]:
        raise CheckpointError(f"{path}: sha256 does not match the manifest (corrupt or tampered)")
    return data


def parse_safetensors(data: bytes, path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors buffer; anything malformed is a CheckpointError naming ``path``."""
    try:
        return load_safetensors(data)
    except Exception as exc:  # untrusted input: any parser failure means "not a valid file"  # noqa: BLE001
        message = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise CheckpointError(f"{path}: not a valid safetensors file ({message})") from None


def _tensors(folder: Path, name: str, manifest: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    return parse_safetensors(_verified_bytes(folder, name, manifest), Path(folder) / name)


def _nonfinite(tensor: torch.Tensor) -> bool:
    if not (tensor.is_floating_point() or tensor.is_complex()):
        return False
    if tensor.is_floating_point() and tensor.element_size() == 1:  # float8: no isfinite kernel
        tensor = tensor.float()
    return not bool(torch.isfinite(tensor).all())


def check_finite(tensors: Mapping[str, torch.Tensor], where: Path, names: Mapping[str, str] | None = None) -> None:
    """Raise a CheckpointError naming every tensor (up to five) that holds NaN or infinity."""
    bad = sorted((names or {}).get(k, k) for k, t in tensors.items() if _nonfinite(t))
    if bad:
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise CheckpointError(f"{where}: non-finite values (NaN or infinity) in {', '.join(bad[:5])}{more}")


def load_checkpoint(folder: Path, finite_exempt: tuple[str, ...] = ()) -> dict[str, Any]:
    """Load and verify a checkpoint; returns ``{"model", "ema", "state", "manifest"}``.

    :param finite_exempt: top-level keys of the state whose tensors may hold NaN or
        infinity (diagnostics such as running metric sums); every other tensor must be finite.
    :raises CheckpointError: for anything but a complete, untampered, finite checkpoint.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such checkpoint folder")
    manifest = read_manifest(folder)
    model = _tensors(folder, "model.safetensors", manifest)
    check_finite(model, folder / "model.safetensors")
    ema = None
    if "ema.safetensors" in manifest["files"]:
        ema = _tensors(folder, "ema.safetensors", manifest)
        check_finite(ema, folder / "ema.safetensors")
    flat = _tensors(folder, "state.safetensors", manifest)
    raw = _verified_bytes(folder, "state.json", manifest, _MAX_JSON_BYTES)
    skeleton = _parse_json(raw, folder / "state.json")
    try:
        state = unflatten_state(skeleton, flat)
    except CheckpointError as exc:
        raise CheckpointError(f"{folder / 'state.json'}: {exc}") from None
    paths = _tensor_paths(skeleton)
    checked = {k: t for k, t in flat.items() if paths.get(k, k).partition(".")[0] not in finite_exempt}
    check_finite(checked, folder / "state.safetensors", names=paths)
    return {"model": model, "ema": ema, "state": state, "manifest": manifest}


def _tensor_paths(skeleton: Any, prefix: str = "") -> dict[str, str]:
    """``{tensor key: readable path}`` for error messages."""
    paths: dict[str, str] = {}
    if isinstance(skeleton, dict):
        for marker in ("__tensor__", "__ndarray__"):
            if isinstance(skeleton.get(marker), str):
                paths[skeleton[marker]] = prefix or "state"
        for key, value in skeleton.items():
            if key == "__items__" and isinstance(value, list):
                for item in value:
                    if isinstance(item, list) and len(item) == 2:
                        paths.update(_tensor_paths(item[1], f"{prefix}[{item[0]!r}]"))
            elif key == "__tuple__" and isinstance(value, list):
                for i, v in enumerate(value):
                    paths.update(_tensor_paths(v, f"{prefix}[{i}]"))
            elif not key.startswith("__"):
                paths.update(_tensor_paths(value, f"{prefix}.{key}" if prefix else key))
    elif isinstance(skeleton, list):
        for i, v in enumerate(skeleton):
            paths.update(_tensor_paths(v, f"{prefix}[{i}]"))
    return paths


# -- Finding, pruning, best -------------------------------------------------------------------


def _step_entries(folder: Path) -> Iterator[tuple[tuple[int, int], Path]]:
    """``((step, seq), path)`` for the step folders directly inside ``folder``."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        match = _STEP_DIR.match(entry.name)
        if match and entry.is_dir(follow_symlinks=False):
            yield (int(match.group(1)), int(match.group(2) or 0)), Path(entry.path)


def step_folders(root: Path) -> Iterator[tuple[int, Path]]:
    """Every step folder in ``root`` and in its stage folders (one level down), as (step, path)."""
    root = Path(root)
    for folder in [root, *sorted(p for p in _subfolders(root))]:
        for (step, _), path in _step_entries(folder):
            yield step, path


def _subfolders(root: Path) -> Iterator[Path]:
    try:
        entries = list(os.scandir(root))
    except OSError:
        return
    for entry in entries:
        if not entry.name.startswith(".") and not _STEP_DIR.match(entry.name) and entry.is_dir(follow_symlinks=False):
            yield Path(entry.path)


def _remove_path(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.exists():
        shutil.rmtree(path, ignore_errors=True)


def sweep_temporaries(root: Path) -> None:
    """Remove leftovers of interrupted writes and deletes (``.tmp-*`` and ``.trash-*``)."""
    root = Path(root)
    for folder in [root, *_subfolders(root)]:
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            if name.startswith((".tmp-", ".trash-")):
                _remove_path(folder / name)


def remove_checkpoint(path: Path) -> None:
    """Delete a checkpoint folder; it stops being a checkpoint (an atomic rename) before anything is deleted."""
    path = Path(path)
    trash = path.parent / f".trash-{path.name}-{os.getpid()}"
    try:
        os.rename(path, trash)
    except FileNotFoundError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def _order(path: Path, manifest: Mapping[str, Any]) -> tuple[int, int, int]:
    match = _STEP_DIR.match(path.name)
    assert match is not None
    stage = manifest.get("stage_index", 0)
    return int(match.group(1)), stage if type(stage) is int else 0, int(match.group(2) or 0)


def find_latest(root: Path) -> Path | None:
    """The newest complete, verified checkpoint below ``root``; broken ones are skipped with a warning.

    Newest means the highest step; at the same step a later stage, then a
    later ``-<seq>`` suffix. Nothing is deleted (a run may be training right
    now); :func:`sweep_temporaries` is for the process that takes the run over.
    """
    root = Path(root)
    candidates = []
    for _, path in step_folders(root):
        try:
            manifest = read_manifest(path)
        except CheckpointError as exc:
            warnings.warn(f"skipping checkpoint {path}: {exc}", stacklevel=2)
            continue
        candidates.append((_order(path, manifest), path, manifest))
    for _, path, manifest in sorted(candidates, key=lambda item: item[0], reverse=True):
        try:
            for name in manifest["files"]:
                _verified_bytes(path, name, manifest)
        except CheckpointError as exc:
            warnings.warn(f"skipping checkpoint {path}: {exc}", stacklevel=2)
            continue
        return path
    return None


def has_step_folders(root: Path) -> bool:
    """True when ``root`` holds any step folder, complete or not."""
    return any(True for _ in step_folders(root))


def best_target(root: Path) -> Path | None:
    """The step folder ``root/best`` points at (resolved), or None."""
    link = Path(root) / BEST
    if not link.is_symlink():
        return link.resolve() if link.is_dir() else None
    return link.resolve() if link.exists() else None


def point_best(root: Path, folder: Path) -> None:
    """Make ``root/best`` name the complete checkpoint ``folder`` (an atomic symlink swap).

    Where symbolic links are not available the folder is copied instead.
    """
    root, folder = Path(root), Path(folder)
    link = root / BEST
    tmp = root / f".tmp-{BEST}-{os.getpid()}"
    try:
        _remove_path(tmp)
        os.symlink(os.path.relpath(folder, root), tmp, target_is_directory=True)
        if link.is_dir() and not link.is_symlink():  # a copied best from a platform without symlinks
            remove_checkpoint(link)
        os.replace(tmp, link)
        fsync_dir(root)
    except (OSError, NotImplementedError):
        _remove_path(tmp)
        _copy_best(folder, link)


def repair_best(root: Path) -> None:
    """Point ``best`` at the newest checkpoint that was taken as the best one.

    A kill can land between writing that checkpoint and moving ``best``; the
    process that takes the run over calls this.
    """
    root = Path(root)
    newest: tuple[tuple[int, int, int], Path] | None = None
    for _, path in step_folders(root):
        try:
            manifest = read_manifest(path)
        except CheckpointError:
            continue
        if manifest.get("best") is True and (newest is None or _order(path, manifest) > newest[0]):
            newest = (_order(path, manifest), path)
    if newest is not None and best_target(root) != newest[1].resolve():
        point_best(root, newest[1])


def _copy_best(folder: Path, link: Path) -> None:
    tmp = link.parent / f".tmp-{BEST}-copy-{os.getpid()}"
    try:
        _remove_path(tmp)
        shutil.copytree(folder, tmp)
        fsync_dir(tmp)
        if link.is_symlink():
            link.unlink()
        elif link.exists():
            remove_checkpoint(link)
        os.rename(tmp, link)
        fsync_dir(link.parent)
    except OSError as exc:
        _remove_path(tmp)
        raise CheckpointError(f"cannot write checkpoint {link}: {exc.strerror or exc}") from None


def prune_checkpoints(folder: Path, keep_last: int, protect: Path | None = None) -> None:
    """Delete all but the newest ``keep_last`` step folders directly inside ``folder``.

    :param protect: a folder never deleted (the one ``best`` points at).
    """
    entries = sorted(_step_entries(Path(folder)), key=lambda item: item[0])
    keep = {path for _, path in entries[-keep_last:]} if keep_last > 0 else set()
    protected = Path(protect).resolve() if protect is not None else None
    for _, path in entries:
        if path not in keep and path.resolve() != protected:
            remove_checkpoint(path)
