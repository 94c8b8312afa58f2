"""The built-in loggers on their own: JSONL truncation on restore, bounded plot history, plots on disk."""

from __future__ import annotations

import json

import matplotlib.image
import pytest

from vaeforge.builtin.loggers.jsonl import JSONLLogger
from vaeforge.builtin.loggers.plots import MAX_POINTS, PlotsConfig, PlotsLogger


def test_jsonl_restore_cuts_lines_written_after_the_checkpoint(tmp_path):
    logger = JSONLLogger(None, tmp_path)
    logger.log_metrics({"train/loss": 1.0}, 1, stage="warmup")
    state = logger.state_dict()
    logger.log_metrics({"train/loss": 2.0}, 2, stage="warmup")
    logger.close()
    JSONLLogger(None, tmp_path).load_state_dict(state)
    for name in ("metrics.jsonl", "metrics_warmup.jsonl"):
        lines = (tmp_path / name).read_text().splitlines()
        assert [json.loads(line)["step"] for line in lines] == [1]


def test_jsonl_restore_never_pads_a_file_that_lost_lines(tmp_path):
    logger = JSONLLogger(None, tmp_path)
    logger.log_metrics({"train/loss": 1.0}, 1)
    logger.log_metrics({"train/loss": 2.0}, 2)
    state = logger.state_dict()
    logger.close()
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(path.read_bytes()[:-5])  # the tail of the last line was lost in a crash
    with pytest.warns(RuntimeWarning, match="shorter than when the checkpoint was written"):
        JSONLLogger(None, tmp_path).load_state_dict(state)
    assert b"\0" not in path.read_bytes()
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1]


def test_plot_history_stays_bounded_and_keeps_the_newest_point(tmp_path):
    logger = PlotsLogger(PlotsConfig(every_n_steps=10**9), tmp_path)
    for step in range(5 * MAX_POINTS):
        logger.log_metrics({"train/loss": float(step)}, step)
    points = logger.series["train/loss"]
    assert len(points) <= MAX_POINTS
    assert points[0] == (0, 0.0) and points[-1] == (5 * MAX_POINTS - 1, float(5 * MAX_POINTS - 1))
    assert [s for s, _ in points] == sorted(s for s, _ in points)


def test_plots_switch_to_log_log_past_the_threshold(tmp_path):
    logger = PlotsLogger(PlotsConfig(every_n_steps=10**9, loglog_after=100), tmp_path)
    for step in range(1, 151):
        logger.log_metrics({"train/loss": 10.0 / step, "train/kl": 1.0, "train/bce_recon": 9.0 / step}, step)
    assert logger.draw(100) == {"loss": "linear", "recon": "linear", "kl": "linear"}
    assert logger.draw(150) == {"loss": "log", "recon": "log", "kl": "log"}
    for name in ("loss", "recon", "kl"):
        image = matplotlib.image.imread(tmp_path / "plots" / f"{name}.png")
        assert image.shape[:2] == (400, 600)
