"""Crash-safe checkpoints: safetensors for tensors, JSON for structure, no pickle anywhere.

A checkpoint is a folder::

    step-000123/
      model.safetensors     the model's state_dict (loadable by any safetensors reader)
      ema.safetensors       the EMA weights, when EMA is on
      state.safetensors     every other tensor (optimizer, RNG, callbacks, ...)
      state.json            the structure and scalars, with references into state.safetensors
      manifest.json         format version, step, and the sha256 of every other file; written last

It is written into a temporary sibling folder (``.tmp-step-000123-<pid>``);
every file is fsynced, the manifest last, then the folder is renamed into
place and the parent folder fsynced. A folder without a valid manifest is
therefore never a checkpoint, and a kill at any moment leaves either the old
set of checkpoints or the old set plus one complete new one.

Loading reads each file once, checks its sha256 against the manifest, parses
tensors with safetensors (which validates offsets and header size) and JSON
with the standard library, and rejects non-finite floating tensors by name.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from vaeforge.errors import CheckpointError

FORMAT_VERSION = 1
"""The checkpoint format written by this version; every older version still loads."""

MANIFEST = "manifest.json"
_STEP_DIR = re.compile(r"^step-(\d+)$")
_MAX_JSON_BYTES = 64 * 1024 * 1024


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
            key = f"t{len(tensors)}"
            wide = np.int64 if np.issubdtype(node.dtype, np.integer) else np.float64
            tensors[key] = torch.from_numpy(np.ascontiguousarray(node).astype(wide))
            return {"__ndarray__": key, "dtype": str(node.dtype)}
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
    """Invert :func:`flatten_state`."""

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if "__tensor__" in node:
                return tensors[node["__tensor__"]]
            if "__ndarray__" in node:
                return tensors[node["__ndarray__"]].numpy().astype(node["dtype"])
            if "__items__" in node:
                return {k: walk(v) for k, v in node["__items__"]}
            if "__tuple__" in node:
                return tuple(walk(v) for v in node["__tuple__"])
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    try:
        return walk(skeleton)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"state.json refers to a tensor that is not in state.safetensors: {exc}") from None


# -- Random number generators -----------------------------------------------------------


def capture_rng() -> dict[str, Any]:
    """The state of Python's, NumPy's, torch's and (if present) CUDA's global generators."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    """Restore :func:`capture_rng` output."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# -- Writing ------------------------------------------------------------------------------


def _write_synced(path: Path, data: bytes) -> str:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return hashlib.sha256(data).hexdigest()


def fsync_dir(path: Path) -> None:
    """fsync a directory so a rename inside it is durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(
    folder: Path,
    *,
    model: Mapping[str, torch.Tensor],
    state: Any,
    ema: Mapping[str, torch.Tensor] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write one checkpoint atomically into ``folder`` (which must not exist yet).

    :param folder: the final folder, e.g. ``checkpoints/main/step-000123``.
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
    try:
        parent.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        skeleton, tensors = flatten_state(state)
        files: dict[str, bytes] = {
            "model.safetensors": save_safetensors(_plain_tensors(model)),
            "state.safetensors": save_safetensors(tensors),
            "state.json": json.dumps(skeleton).encode(),
        }
        if ema is not None:
            files["ema.safetensors"] = save_safetensors(_plain_tensors(ema))
        hashes = {name: _write_synced(tmp / name, data) for name, data in files.items()}
        manifest = {"format_version": FORMAT_VERSION, **dict(meta or {}), "files": hashes}
        _write_synced(tmp / MANIFEST, json.dumps(manifest, indent=1).encode())
        fsync_dir(tmp)
        os.replace(tmp, folder)
        fsync_dir(parent)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointError(f"cannot write checkpoint {folder}: {exc.strerror or exc}") from None
    return folder


def _plain_tensors(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


# -- Reading ------------------------------------------------------------------------------


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of a checkpoint folder, checked for shape and version."""
    path = Path(folder) / MANIFEST
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{folder}: not a complete checkpoint (no {MANIFEST})") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        manifest = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise CheckpointError(f"{path}: not valid JSON") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise CheckpointError(f"{path}: not a vaeforge checkpoint manifest")
    version = manifest.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version!r} is not supported (this vaeforge reads 1 to {FORMAT_VERSION})"
        )
    for name in manifest["files"]:
        if not isinstance(name, str) or "/" in name or "\\" in name or name.startswith("."):
            raise CheckpointError(f"{path}: invalid file name {name!r} in manifest")
    for required in ("model.safetensors", "state.safetensors", "state.json"):
        if required not in manifest["files"]:
            raise CheckpointError(f"{path}: manifest does not list {required}")
    return manifest


def _verified_bytes(folder: Path, name: str, manifest: Mapping[str, Any]) -> bytes:
    path = folder / name
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing (listed in the manifest)") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read: {exc.strerror}") from None
    if hashlib.sha256(data).hexdigest() != manifest["files"][name]:
        raise CheckpointError(f"{path}: sha256 does not match the manifest (corrupt or tampered)")
    return data


def _tensors(folder: Path, name: str, manifest: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    data = _verified_bytes(folder, name, manifest)
    try:
        tensors = load_safetensors(data)
    except (SafetensorError, ValueError, RuntimeError, OverflowError) as exc:
        raise CheckpointError(f"{folder / name}: not a valid safetensors file: {exc}") from None
    return tensors


def _check_finite(tensors: Mapping[str, torch.Tensor], where: Path, names: Mapping[str, str] | None = None) -> None:
    bad = [names.get(k, k) if names else k for k, t in tensors.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise CheckpointError(f"{where}: non-finite values in {', '.join(sorted(bad)[:5])}")


def load_checkpoint(folder: Path) -> dict[str, Any]:
    """Load and verify a checkpoint; returns ``{"model", "ema", "state", "manifest"}``.

    :raises CheckpointError: for anything but a complete, untampered, finite checkpoint.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    model = _tensors(folder, "model.safetensors", manifest)
    _check_finite(model, folder / "model.safetensors")
    ema = None
    if "ema.safetensors" in manifest["files"]:
        ema = _tensors(folder, "ema.safetensors", manifest)
        _check_finite(ema, folder / "ema.safetensors")
    flat = _tensors(folder, "state.safetensors", manifest)
    raw = _verified_bytes(folder, "state.json", manifest)
    if len(raw) > _MAX_JSON_BYTES:
        raise CheckpointError(f"{folder / 'state.json'}: larger than {_MAX_JSON_BYTES} bytes")
    try:
        skeleton = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise CheckpointError(f"{folder / 'state.json'}: not valid JSON") from None
    state = unflatten_state(skeleton, flat)
    _check_finite(flat, folder / "state.safetensors", names=_tensor_paths(skeleton))
    return {"model": model, "ema": ema, "state": state, "manifest": manifest}


def _tensor_paths(skeleton: Any, prefix: str = "") -> dict[str, str]:
    """``{tensor key: readable path}`` for error messages."""
    paths: dict[str, str] = {}
    if isinstance(skeleton, dict):
        if "__tensor__" in skeleton:
            paths[skeleton["__tensor__"]] = prefix or "state"
        for key, value in skeleton.items():
            if key == "__items__":
                for k, v in value:
                    paths.update(_tensor_paths(v, f"{prefix}.{k}"))
            elif key == "__tuple__":
                for i, v in enumerate(value):
                    paths.update(_tensor_paths(v, f"{prefix}[{i}]"))
            elif not key.startswith("__"):
                paths.update(_tensor_paths(value, f"{prefix}.{key}" if prefix else key))
    elif isinstance(skeleton, list):
        for i, v in enumerate(skeleton):
            paths.update(_tensor_paths(v, f"{prefix}[{i}]"))
    return paths


# -- Finding and pruning -------------------------------------------------------------------


def step_folders(root: Path) -> Iterator[tuple[int, Path]]:
    """Every ``step-N`` folder below ``root`` (any stage), as (N, path)."""
    root = Path(root)
    if not root.is_dir():
        return
    for path in root.rglob("step-*"):
        match = _STEP_DIR.match(path.name)
        if match and path.is_dir():
            yield int(match.group(1)), path


def sweep_temporaries(root: Path) -> None:
    """Remove leftovers of interrupted writes (``.tmp-*`` and ``.trash-*`` folders)."""
    root = Path(root)
    if not root.is_dir():
        return
    for pattern in (".tmp-*", ".trash-*"):
        for path in list(root.rglob(pattern)):
            shutil.rmtree(path, ignore_errors=True)


def find_latest(root: Path) -> Path | None:
    """The newest complete, verified checkpoint below ``root``; broken ones are skipped with a warning."""
    sweep_temporaries(root)
    for step, path in sorted(step_folders(root), key=lambda item: item[0], reverse=True):
        try:
            manifest = read_manifest(path)
            for name in manifest["files"]:
                _verified_bytes(path, name, manifest)
        except CheckpointError as exc:
            warnings.warn(f"skipping checkpoint {path}: {exc}", stacklevel=2)
            continue
        return path
    return None


def replace_folder(new: Path, target: Path) -> None:
    """Move the complete checkpoint ``new`` to ``target``, replacing what is there (used for ``best``)."""
    trash = target.parent / f".trash-{target.name}-{os.getpid()}"
    if target.exists():
        os.replace(target, trash)
    os.replace(new, target)
    fsync_dir(target.parent)
    shutil.rmtree(trash, ignore_errors=True)
