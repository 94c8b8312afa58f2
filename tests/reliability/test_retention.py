"""Which checkpoints a run keeps: ``keep_last`` per stage folder, ``best`` on a metric, one folder per step."""

from __future__ import annotations

import json
import os

from reliability_helpers import checkpoints, metric_records, tiny_config, train

from vaeforge import checkpoint as ckpt
from vaeforge.inspect import choose_checkpoint


def manifest(path):
    return json.loads((path / "manifest.json").read_text())


def test_keep_last_and_best_together(tmp_path, registry):
    run = tmp_path / "run"
    train(tiny_config(**{
        "trainer.epochs": 4,
        "callbacks": [{"name": "checkpoint",  # "best" is the highest loss here: an early epoch, long pruned
                       "params": {"every_n_steps": 3, "keep_last": 1, "save_best": True, "monitor": "val/loss",
                                  "mode": "max"}}],
    }), run, registry)
    val = [r for r in metric_records(run) if "val/loss" in r]
    best_step = max(val, key=lambda r: r["val/loss"])["step"]
    assert best_step < val[-1]["step"]
    best = run / "checkpoints" / "best"
    assert best.is_symlink() and not os.path.isabs(os.readlink(best))
    assert manifest(best)["step"] == best_step
    assert choose_checkpoint(run, "best") == best
    kept = checkpoints(run)
    assert kept[-1] == ckpt.find_latest(run / "checkpoints") and manifest(kept[-1])["finished"] is True
    assert kept == [best.resolve(), kept[-1]]  # keep_last: 1, plus the folder best names
    assert manifest(kept[0])["tag"] == "step" and manifest(kept[0])["batch_index"] == 0  # taken at an epoch's end


def test_a_later_checkpoint_of_the_same_step_supersedes_the_earlier(tmp_path, registry):
    run = tmp_path / "run"
    train(tiny_config(**{"trainer.epochs": 1, "callbacks": [{"name": "checkpoint", "params": {"keep_last": 5}}]}),
          run, registry)
    names = [p.name for p in checkpoints(run)]
    assert names == ["step-00000000", "step-00000008-1"], names  # the epoch-end one gave way to the end one
    assert manifest(run / "checkpoints" / "step-00000008-1")["tag"] == "end"
