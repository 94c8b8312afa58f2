"""A 3-stage pipeline: a freeze, optimizer switches, a threshold transition, and resuming inside any stage.

Stages: ``warmup`` (Adam, decoder frozen, 2 epochs), ``main`` (AdamW,
decoder unfrozen, up to 8 epochs, ``until: train/loss below 10.5`` after at
least 2 epochs), ``finetune`` (SGD, encoder frozen, 2 epochs). 8 steps per
epoch, checkpoints every 3 steps and after every epoch, all kept.
"""

from __future__ import annotations

import json

import pytest
import torch
from reliability_helpers import checkpoints, copy_until, differences, metric_records, resume, tiny_config, train

from vaeforge import checkpoint as ckpt

THRESHOLD = 10.5
MIN_EPOCHS = 2
MAIN_EPOCHS = 8
STEPS_PER_EPOCH = 8
METRIC_FILES = ("metrics.jsonl", "metrics_warmup.jsonl", "metrics_main.jsonl", "metrics_finetune.jsonl")


def pipeline_config():
    return tiny_config(stages=[
        {"name": "warmup", "epochs": 2, "freeze": ["decoder"]},
        {"name": "main", "epochs": MAIN_EPOCHS, "unfreeze": ["decoder"],
         "optimizer": {"name": "adamw", "params": {"lr": 0.01}},
         "until": {"metric": "train/loss", "below": THRESHOLD, "min_epochs": MIN_EPOCHS}},
        {"name": "finetune", "epochs": 2, "freeze": ["encoder"],
         "optimizer": {"name": "sgd", "params": {"lr": 0.001, "momentum": 0.5}}},
    ])


@pytest.fixture(scope="module")
def reference(tmp_path_factory, registry):
    folder = tmp_path_factory.mktemp("pipeline") / "run"
    train(pipeline_config(), folder, registry)
    return folder


def manifest(path):
    return json.loads((path / "manifest.json").read_text())


def stage_checkpoints(run_dir, stage):
    return [p for p in checkpoints(run_dir) if p.parent.name == stage]


def weights(path, prefix):
    model = ckpt.load_checkpoint(path)["model"]
    return {k: v for k, v in model.items() if k.startswith(prefix)}


def assert_equal(a, b):
    assert a.keys() == b.keys() and a
    for key in a:
        assert torch.equal(a[key], b[key]), key


def assert_changed(a, b):
    assert a.keys() == b.keys() and a
    assert all(not torch.equal(a[key], b[key]) for key in a)


def expected_transition_step(run_dir):
    """The step of the first ``main`` epoch (after MIN_EPOCHS) whose mean train loss is below the threshold."""
    epoch_records = [r for r in metric_records(run_dir) if r.get("stage") == "main" and "epoch/train/loss" in r]
    for number, record in enumerate(epoch_records, start=1):
        if number >= MIN_EPOCHS and record["epoch/train/loss"] < THRESHOLD:
            return record["step"]
    raise AssertionError(f"main never crossed {THRESHOLD}: {[r['epoch/train/loss'] for r in epoch_records]}")


def test_folders_and_metric_files_per_stage(reference):
    for name in METRIC_FILES:
        assert metric_records(reference, name)
    for stage in ("warmup", "main", "finetune"):
        assert stage_checkpoints(reference, stage), stage
        assert {r["stage"] for r in metric_records(reference, f"metrics_{stage}.jsonl")} == {stage}


def test_until_moves_on_at_the_right_step(reference):
    step = expected_transition_step(reference)
    main_start = 2 * STEPS_PER_EPOCH
    assert main_start + MIN_EPOCHS * STEPS_PER_EPOCH <= step < main_start + MAIN_EPOCHS * STEPS_PER_EPOCH, \
        "the threshold must end the stage early for this test to mean anything"
    assert max(r["step"] for r in metric_records(reference, "metrics_main.jsonl")) == step
    assert min(r["step"] for r in metric_records(reference, "metrics_finetune.jsonl")) > step
    last_main = stage_checkpoints(reference, "main")[-1]
    assert manifest(last_main)["step"] == step
    state = ckpt.load_checkpoint(last_main)["state"]
    assert state["metrics"]["transition_step"] == step
    assert state["progress"]["stage_done"] is True
    finetune_steps = [manifest(p)["step"] for p in stage_checkpoints(reference, "finetune")]
    assert max(finetune_steps) == step + 2 * STEPS_PER_EPOCH


def test_frozen_parameters_stay_equal_through_their_stage(reference):
    warmup = stage_checkpoints(reference, "warmup")
    assert manifest(warmup[0])["tag"] == "start"
    assert_equal(weights(warmup[0], "decoder."), weights(warmup[-1], "decoder."))
    assert_changed(weights(warmup[0], "encoder."), weights(warmup[-1], "encoder."))
    main_end = stage_checkpoints(reference, "main")[-1]
    finetune_end = stage_checkpoints(reference, "finetune")[-1]
    assert_equal(weights(main_end, "encoder."), weights(finetune_end, "encoder."))
    assert_changed(weights(main_end, "decoder."), weights(finetune_end, "decoder."))


def test_each_stage_has_its_own_optimizer_over_its_trainable_parameters(reference):
    def optimizer(stage):
        return ckpt.load_checkpoint(stage_checkpoints(reference, stage)[-1])["state"]["optimizer"]

    warmup, main, finetune = optimizer("warmup"), optimizer("main"), optimizer("finetune")
    assert len(warmup["param_groups"][0]["params"]) == 4  # the encoder's two Linear layers
    assert warmup["param_groups"][0]["decoupled_weight_decay"] is False  # adam
    assert len(main["param_groups"][0]["params"]) == 8
    assert main["param_groups"][0]["decoupled_weight_decay"] is True  # adamw
    assert len(finetune["param_groups"][0]["params"]) == 4  # the decoder's
    assert finetune["param_groups"][0]["momentum"] == 0.5  # sgd
    assert all("momentum_buffer" in s for s in finetune["state"].values())


@pytest.mark.parametrize("where", ["inside main", "end of warmup", "transition out of main"])
def test_resumed_inside_a_pipeline_it_ends_bit_identical(where, reference, tmp_path, registry):
    if where == "inside main":
        last = next(p for p in stage_checkpoints(reference, "main") if manifest(p)["batch_index"] not in (0, 8)
                    and manifest(p)["epoch"] >= 1)
    elif where == "end of warmup":
        last = stage_checkpoints(reference, "warmup")[-1]
    else:
        last = stage_checkpoints(reference, "main")[-1]
    copy = copy_until(reference, tmp_path / "copy", last)
    resume(copy, registry)
    assert differences(reference, copy, METRIC_FILES) == [], f"resumed from {last.relative_to(reference)}"


def test_trainer_max_steps_caps_a_pipeline_on_an_endless_stream(tmp_path, registry):
    """Stages without their own bounds on a stream: ``trainer.max_steps`` ends the run (it used to loop forever)."""
    stream = {**tiny_config()["data"]["params"], "stream": True}
    run = tmp_path / "run"
    train(tiny_config(**{"data.params": stream, "trainer.max_steps": 10, "scheduler": None,
                         "losses": [{"name": "mse_recon"}, {"name": "kl"}],
                         "stages": [{"name": "a"},
                                    {"name": "b", "optimizer": {"name": "sgd", "params": {"lr": 0.01}}}]}),
          run, registry)
    last = checkpoints(run)[-1]
    assert manifest(last)["step"] == 10 and manifest(last)["finished"] is True
    assert max(r["step"] for r in metric_records(run, "metrics_a.jsonl")) == 10
