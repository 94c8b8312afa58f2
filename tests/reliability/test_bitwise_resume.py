"""A resumed run ends bit for bit where the uninterrupted run ends (CPU), on every data path.

Each test trains once without interruption (checkpoints every 3 steps, all
kept), then copies the run folder as it was when a given checkpoint was the
newest one (the metrics files keep the later records, as after a crash) and
resumes the copy. Every model, EMA, optimizer, scheduler and RNG tensor must
be ``torch.equal`` and ``metrics.jsonl`` must hold the same values.

The negative controls leave the random generators, or the position inside
the epoch, out of the resume and check that the same comparison then fails.
"""

from __future__ import annotations

import json

import pytest
from reliability_helpers import checkpoints, copy_until, differences, final_state, resume, tiny_config, train

from vaeforge import checkpoint as ckpt
from vaeforge.trainer.batches import TrainBatches

DATA_PATHS = {
    "in-memory": {},
    "dataloader-0-workers": {"data.params": {**tiny_config()["data"]["params"], "map_style": True}},
    "dataloader-2-workers": {"data.params": {**tiny_config()["data"]["params"], "map_style": True},
                             "data.num_workers": 2},
    "stream": {"data.params": {**tiny_config()["data"]["params"], "stream": True}, "trainer.max_steps": 20,
               "trainer.val_every_n_steps": 5,
               "losses": [{"name": "mse_recon"},
                          {"name": "kl", "weight": {"schedule": "linear", "start": 0.1, "end": 1.0, "steps": 10}}]},
}


def manifest(path):
    return json.loads((path / "manifest.json").read_text())


def pick(run_dir, where: str):
    """A checkpoint of the run: ``mid-epoch`` (inside an epoch), ``epoch-end`` or ``start``."""
    for path in checkpoints(run_dir):
        meta = manifest(path)
        if where == "start" and meta["tag"] == "start":
            return path
        if where == "mid-epoch" and meta["tag"] == "step" and meta["batch_index"] not in (0,) and meta["step"] > 8:
            return path
        if where == "epoch-end" and meta["tag"] == "step" and meta["batch_index"] == 0 and meta["epoch"] >= 1:
            return path
    raise AssertionError(f"no {where} checkpoint in {run_dir}")


@pytest.fixture(scope="module")
def reference_runs(tmp_path_factory, registry):
    """One uninterrupted run per data path (trained on first use)."""
    runs = {}

    def get(name):
        if name not in runs:
            folder = tmp_path_factory.mktemp("reference") / name
            train(tiny_config(**DATA_PATHS[name]), folder, registry)
            runs[name] = folder
        return runs[name]

    return get


@pytest.mark.parametrize("data_path", list(DATA_PATHS))
def test_resumed_run_ends_bit_for_bit_where_the_uninterrupted_run_ends(data_path, reference_runs, tmp_path, registry):
    reference = reference_runs(data_path)
    points = ["mid-epoch", "start"] if data_path == "stream" else ["mid-epoch", "epoch-end"]
    for where in points:
        last = pick(reference, where)
        copy = copy_until(reference, tmp_path / where, last)
        assert ckpt.find_latest(copy / "checkpoints").name == last.name
        resume(copy, registry)
        assert differences(reference, copy) == [], f"resumed from {where} checkpoint {last.name}"


def test_resuming_a_finished_run_changes_nothing(reference_runs, tmp_path, registry):
    reference = reference_runs("in-memory")
    copy = copy_until(reference, tmp_path / "copy", checkpoints(reference)[-1])
    before = final_state(copy)["folder"]
    assert manifest(before)["finished"] is True
    resume(copy, registry)
    assert final_state(copy)["folder"] == before
    assert differences(reference, copy) == []
    samples = sorted(p.relative_to(reference) for p in reference.glob("samples/*"))
    assert samples == sorted(p.relative_to(copy) for p in copy.glob("samples/*"))
    assert all((copy / p).read_bytes() == (reference / p).read_bytes() for p in samples)


def test_negative_control_without_rng_state_the_comparison_fails(reference_runs, tmp_path, registry, monkeypatch):
    reference = reference_runs("in-memory")
    copy = copy_until(reference, tmp_path / "copy", pick(reference, "mid-epoch"))
    monkeypatch.setattr(ckpt, "restore_rng", lambda state: None)  # as if the RNG state were not in the checkpoint
    resume(copy, registry)
    found = differences(reference, copy)
    assert any(line.startswith("model/") for line in found), found
    assert any(line.startswith("metrics.jsonl") for line in found), found


def test_negative_control_without_data_position_the_comparison_fails(reference_runs, tmp_path, registry, monkeypatch):
    reference = reference_runs("in-memory")
    copy = copy_until(reference, tmp_path / "copy", pick(reference, "mid-epoch"))
    original = TrainBatches.epoch
    monkeypatch.setattr(TrainBatches, "epoch", lambda self, stage, epoch, start=0: original(self, stage, epoch, 0))
    resume(copy, registry)
    found = differences(reference, copy)
    assert any(line.startswith("model/") for line in found), found
