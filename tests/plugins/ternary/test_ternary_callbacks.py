"""``coverage_plateau``."""

from __future__ import annotations

from types import SimpleNamespace

from vaeforge.api import Context
from vaeforge_ternary.callbacks import CoveragePlateau, CoveragePlateauConfig


def run(callback, values):
    trainer = SimpleNamespace(ctx=Context())
    stops = []
    for value in values:
        callback.on_validation_end(trainer, {"val/coverage_100k": value})
        stops.append(callback.should_stop(trainer))
    return stops


def test_stops_after_patience_without_improvement():
    callback = CoveragePlateau(CoveragePlateauConfig(patience=2, min_improvement=0.001))
    assert run(callback, [0.9, 0.95, 0.9505, 0.9509, 0.96]) == [False, False, False, True, False]


def test_waits_for_the_threshold():
    callback = CoveragePlateau(CoveragePlateauConfig(patience=1, threshold=0.99))
    assert run(callback, [0.95, 0.95, 0.95, 0.991, 0.991]) == [False, False, False, False, True]


def test_state_round_trip_and_reset():
    callback = CoveragePlateau(CoveragePlateauConfig(patience=3))
    run(callback, [0.5, 0.5])
    restored = CoveragePlateau(CoveragePlateauConfig(patience=3))
    restored.load_state_dict(callback.state_dict())
    assert (restored.best, restored.wait) == (0.5, 1)
    restored.on_stage_start(None, "main")
    assert (restored.best, restored.wait) == (None, 0)


def test_ignores_epochs_without_the_metric():
    callback = CoveragePlateau(CoveragePlateauConfig(patience=1))
    trainer = SimpleNamespace(ctx=Context())
    callback.on_validation_end(trainer, {"val/loss": 1.0})
    assert callback.best is None and not callback.should_stop(trainer)
