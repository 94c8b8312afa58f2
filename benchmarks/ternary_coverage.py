"""Prior coverage of the ternary presets by epoch, with seconds per epoch.

Trains each preset with the real Trainer in this process (checkpoints and
loggers off) and prints, per epoch: training seconds, evaluation seconds
(the ``ternary_coverage`` metric: 1M prior samples and exact reconstruction),
exact reconstruction, coverage at 100k and 1M prior samples, and the ideal
for iid uniform draws. Printed, never asserted:

    python benchmarks/ternary_coverage.py [--preset ternary --preset ternary-dual] [--epochs 20]
        [--seed 0] [--set trainer.epochs=100 ...] [--json out.json]

Bar (issue 5): recon 100%, coverage@1M 100% and coverage@100k >= 99.0% within 20 epochs.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import attrs
import torch

from vaeforge import hookimpl
from vaeforge.api import Callback
from vaeforge.config import ComponentSpec, load_config
from vaeforge.plugins import PluginInfo, build_registry, make_plugin_manager
from vaeforge.trainer.loop import Trainer


class EpochClock(Callback):
    """Training and evaluation wall time of each epoch, and the epoch's coverage metrics."""

    def __init__(self, config: None = None) -> None:
        self.rows: list[dict[str, float]] = []
        self._start = self._trained = 0.0

    def on_epoch_start(self, trainer) -> None:
        self._start = time.perf_counter()

    def on_batch_end(self, trainer, result) -> None:
        self._trained = time.perf_counter()

    def on_epoch_end(self, trainer, metrics) -> None:
        now = time.perf_counter()
        row = {"epoch": len(self.rows) + 1, "train_s": self._trained - self._start, "eval_s": now - self._trained}
        row.update({k.removeprefix("val/"): v for k, v in metrics.items() if k.startswith("val/")})
        self.rows.append(row)
        print(format_row(row), flush=True)


@hookimpl
def register_callbacks(register):
    register("epoch_clock", EpochClock)


HEADER = "epoch | train s | eval s | recon exact | coverage@100k | coverage@1M"


def format_row(row: dict[str, float]) -> str:
    recon = row.get("recon_exact", float("nan")) * 100
    c100k, c1m = row.get("coverage_100k", float("nan")) * 100, row.get("coverage_1M", float("nan")) * 100
    parts = [f"{row['epoch']:5d}", f"{row['train_s']:7.2f}", f"{row['eval_s']:6.2f}", f"{recon:10.2f}%",
             f"{c100k:12.2f}%", f"{c1m:10.3f}%"]
    return " | ".join(parts)


def run(preset: str, epochs: int, seed: int, overrides: list[str], registry) -> dict:
    config = load_config(preset, registry, [f"trainer.epochs={epochs}", f"seed={seed}", *overrides])
    no_checkpoints = registry.get("callback", "checkpoint").config(every_n_epochs=0)
    callbacks = [*config.callbacks, ComponentSpec(name="epoch_clock"),
                 ComponentSpec(name="checkpoint", params=no_checkpoints)]
    config = attrs.evolve(config, callbacks=callbacks, loggers=[])
    print(f"\n## {preset} (seed {seed}, {torch.get_num_threads()} threads)")
    with tempfile.TemporaryDirectory() as folder:
        trainer = Trainer(config, registry, Path(folder))
        params = sum(p.numel() for p in trainer.model.parameters())
        print(f"model parameters: {params:,}")
        print(HEADER)
        trainer.fit()
    clock = next(cb for cb in trainer.callbacks if isinstance(cb, EpochClock))
    return {"preset": preset, "seed": seed, "params": params, "rows": clock.rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", action="append", help="a preset (repeatable); default: every ternary one")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="an override (repeatable)")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    args = parser.parse_args()
    pm = make_plugin_manager()
    pm.add_plugin(sys.modules[__name__], PluginInfo(name="benchmark", module=__name__))
    registry = build_registry(pm)
    presets = args.preset or [n for n in registry.names("preset") if n.startswith("ternary")]
    results = [run(p, args.epochs, args.seed, args.set, registry) for p in presets]
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
