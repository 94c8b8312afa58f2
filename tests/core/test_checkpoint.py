"""The checkpoint format: atomic writes, verified reads, finding the newest, pruning and ``best``."""

from __future__ import annotations

import errno
import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from vaeforge import checkpoint as ckpt
from vaeforge.errors import CheckpointError

MODEL = {"encoder.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3), "encoder.bias": torch.zeros(2)}


def state():
    return {
        "progress": {"global_step": 7, "epoch": 1},
        "optimizer": {"state": {0: {"step": torch.tensor(7.0), "exp_avg": torch.ones(2, 3)}},
                      "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "params": [0, 1]}]},
        "numbers": np.arange(5, dtype=np.uint32),
        "nothing": None,
        "rng": ckpt.capture_rng(),
    }


def save(folder: Path, **kwargs) -> Path:
    return ckpt.save_checkpoint(folder, model=kwargs.pop("model", MODEL), state=kwargs.pop("state", state()),
                                meta={"step": 7, **kwargs.pop("meta", {})}, **kwargs)


def test_layout_manifest_and_plain_readers(tmp_path):
    folder = save(tmp_path / "step-00000007", ema=MODEL)
    assert sorted(p.name for p in folder.iterdir()) == [
        "ema.safetensors", "manifest.json", "model.safetensors", "state.json", "state.safetensors"]
    assert [p.name for p in tmp_path.iterdir()] == ["step-00000007"]  # no temporary left
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["format_version"] == ckpt.FORMAT_VERSION and manifest["step"] == 7
    assert set(manifest["files"]) == {"ema.safetensors", "model.safetensors", "state.json", "state.safetensors"}
    assert torch.equal(load_file(folder / "model.safetensors")["encoder.weight"], MODEL["encoder.weight"])
    json.loads((folder / "state.json").read_text())  # plain JSON


def test_nested_state_round_trips_exactly(tmp_path):
    original = state()
    loaded = ckpt.load_checkpoint(save(tmp_path / "step-00000007"))
    restored = loaded["state"]
    assert restored["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert list(restored["optimizer"]["state"]) == [0]  # integer keys stay integers
    assert torch.equal(restored["optimizer"]["state"][0]["exp_avg"], torch.ones(2, 3))
    assert restored["numbers"].dtype == np.uint32 and (restored["numbers"] == np.arange(5)).all()
    assert restored["nothing"] is None
    assert torch.equal(restored["rng"]["torch"], original["rng"]["torch"])


def test_rng_states_round_trip(tmp_path):
    before = ckpt.capture_rng()
    folder = save(tmp_path / "step-00000007", state={"rng": before})
    expected = (random.random(), np.random.rand(), torch.rand(1))
    ckpt.restore_rng(ckpt.load_checkpoint(folder)["state"]["rng"])
    assert (random.random(), np.random.rand()) == expected[:2]
    assert torch.equal(torch.rand(1), expected[2])


def test_the_manifest_is_written_last_and_everything_is_fsynced(tmp_path, monkeypatch):
    written, synced = [], []
    real_write, real_fsync = ckpt._write_synced, os.fsync
    monkeypatch.setattr(ckpt, "_write_synced", lambda path, data: written.append(path.name) or real_write(path, data))
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}")) or real_fsync(fd))
    folder = save(tmp_path / "step-00000007")
    assert written[-1] == "manifest.json" and len(written) == 4
    tmp_dir = f"{tmp_path}/.tmp-step-00000007-{os.getpid()}"
    assert synced == [f"{tmp_dir}/{name}" for name in written] + [tmp_dir, str(tmp_path)]
    assert folder.is_dir()


def test_a_refused_write_is_an_error_and_leaves_nothing(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(CheckpointError, match=r"cannot write checkpoint .*step-00000007: No space left on device"):
        save(tmp_path / "step-00000007")
    assert list(tmp_path.iterdir()) == []


def test_never_overwrites_an_existing_checkpoint(tmp_path):
    folder = save(tmp_path / "step-00000007")
    with pytest.raises(CheckpointError, match="already exists"):
        save(folder)


def test_unsupported_objects_are_a_type_error_before_anything_is_written(tmp_path):
    with pytest.raises(TypeError, match="cannot checkpoint a object"):
        save(tmp_path / "step-00000007", state={"x": object()})
    assert list(tmp_path.iterdir()) == []


def test_later_checkpoints_of_the_same_step_get_a_suffix(tmp_path):
    assert ckpt.next_step_folder(tmp_path, 7).name == "step-00000007"
    save(tmp_path / "step-00000007")
    assert ckpt.next_step_folder(tmp_path, 7).name == "step-00000007-1"
    save(tmp_path / "step-00000007-1")
    assert ckpt.next_step_folder(tmp_path, 7).name == "step-00000007-2"
    assert ckpt.find_latest(tmp_path).name == "step-00000007-1"


def test_find_latest_orders_by_step_then_stage_then_suffix(tmp_path):
    save(tmp_path / "a" / "step-00000010-1", meta={"stage_index": 0})
    save(tmp_path / "b" / "step-00000010", meta={"stage_index": 1})
    save(tmp_path / "a" / "step-00000009", meta={"stage_index": 0})
    assert ckpt.find_latest(tmp_path) == tmp_path / "b" / "step-00000010"
    save(tmp_path / "b" / "step-00000011", meta={"stage_index": 1})
    assert ckpt.find_latest(tmp_path) == tmp_path / "b" / "step-00000011"


def test_find_latest_skips_incomplete_and_damaged_folders_then_leftovers_are_swept(tmp_path):
    good = save(tmp_path / "step-00000005")
    no_manifest = save(tmp_path / "step-00000006")
    (no_manifest / "manifest.json").unlink()
    damaged = save(tmp_path / "step-00000007")
    with open(damaged / "state.safetensors", "r+b") as handle:
        handle.seek(-1, os.SEEK_END)
        handle.write(b"\x01")
    (tmp_path / f".tmp-step-00000008-{os.getpid() + 1}").mkdir()
    (tmp_path / ".trash-step-00000001-1").mkdir()
    with pytest.warns(UserWarning) as caught:
        assert ckpt.find_latest(tmp_path) == good
    messages = " ".join(str(w.message) for w in caught)
    assert "step-00000006: not a complete checkpoint (no manifest.json)" in messages
    assert "step-00000007/state.safetensors: sha256 does not match" in messages
    assert len(list(tmp_path.iterdir())) == 5  # finding deletes nothing: a run may be writing right now
    ckpt.sweep_temporaries(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-00000005", "step-00000006", "step-00000007"]


def test_find_latest_of_nothing(tmp_path):
    assert ckpt.find_latest(tmp_path / "missing") is None
    assert ckpt.find_latest(tmp_path) is None


def test_prune_keeps_the_newest_and_the_best(tmp_path):
    for step in (1, 2, 3, 4):
        save(tmp_path / f"step-{step:08d}")
    ckpt.point_best(tmp_path, tmp_path / "step-00000001")
    ckpt.prune_checkpoints(tmp_path, keep_last=2, protect=ckpt.best_target(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best", "step-00000001", "step-00000003", "step-00000004"]
    assert ckpt.load_checkpoint(tmp_path / "best")["manifest"]["step"] == 7
    ckpt.point_best(tmp_path, tmp_path / "step-00000004")
    ckpt.prune_checkpoints(tmp_path, keep_last=2, protect=ckpt.best_target(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best", "step-00000003", "step-00000004"]
    assert os.readlink(tmp_path / "best") == "step-00000004"  # relative: the run folder can move


def test_best_is_copied_where_symlinks_are_not_available(tmp_path, monkeypatch):
    save(tmp_path / "step-00000001")
    save(tmp_path / "step-00000002")

    def no_symlinks(*args, **kwargs):
        raise OSError(errno.EPERM, "symbolic links are not allowed")

    monkeypatch.setattr(os, "symlink", no_symlinks)
    ckpt.point_best(tmp_path, tmp_path / "step-00000001")
    ckpt.point_best(tmp_path, tmp_path / "step-00000002")
    best = tmp_path / "best"
    assert best.is_dir() and not best.is_symlink()
    assert (best / "manifest.json").read_bytes() == (tmp_path / "step-00000002" / "manifest.json").read_bytes()
    ckpt.load_checkpoint(best)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best", "step-00000001", "step-00000002"]


def test_removing_a_checkpoint_renames_it_away_first(tmp_path, monkeypatch):
    folder = save(tmp_path / "step-00000001")
    seen = []
    monkeypatch.setattr(ckpt.shutil, "rmtree", lambda path, **kwargs: seen.append(Path(path).name))
    ckpt.remove_checkpoint(folder)
    assert not folder.exists() and seen == [f".trash-step-00000001-{os.getpid()}"]


def test_a_state_json_too_large_to_load_back_is_never_written(tmp_path, monkeypatch):
    monkeypatch.setattr(ckpt, "_MAX_JSON_BYTES", 1000)
    with pytest.raises(CheckpointError, match="state.json would be .* bytes, more than the 1000"):
        save(tmp_path / "step-00000007", state={"series": list(range(1000))})
    assert list(tmp_path.iterdir()) == []


def test_repair_best_points_at_the_newest_checkpoint_taken_as_best(tmp_path):
    save(tmp_path / "step-00000001", meta={"best": True})
    save(tmp_path / "step-00000002", meta={"best": True})
    save(tmp_path / "step-00000003", meta={"best": False})
    ckpt.point_best(tmp_path, tmp_path / "step-00000001")  # killed before best moved to step 2
    ckpt.repair_best(tmp_path)
    assert ckpt.best_target(tmp_path) == (tmp_path / "step-00000002").resolve()
    ckpt.repair_best(tmp_path)  # nothing to do
    assert ckpt.best_target(tmp_path) == (tmp_path / "step-00000002").resolve()
    (tmp_path / "best").unlink()
    ckpt.repair_best(tmp_path)  # killed before the first best link
    assert ckpt.best_target(tmp_path) == (tmp_path / "step-00000002").resolve()
