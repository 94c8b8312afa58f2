"""vaeforge's loop against a bare PyTorch loop: seconds per epoch, same model, data and optimizer.

Both loops train the built-in ``mlp_vae`` on the binarized digits (in memory,
batch 64, Adam 1e-3, BCE + KL) in the same process, alternating, and the
median epoch times are compared. vaeforge runs with its progress bar
(forced on, drawn to a null stream) and JSONL logging; checkpoints are off
because the bare loop writes none. Printed, never asserted:

    python benchmarks/trainer_overhead.py [--epochs 20] [--rounds 3] [--threads 1]

Goal: vaeforge / bare <= 1.05.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from vaeforge import hookimpl
from vaeforge.api import Callback
from vaeforge.builtin.data.digits import Digits, DigitsConfig
from vaeforge.builtin.models.mlp_vae import MLPVAE, MLPVAEConfig
from vaeforge.config import config_from_dict
from vaeforge.distributions import bernoulli_nll
from vaeforge.plugins import PluginInfo, build_registry, make_plugin_manager
from vaeforge.trainer.loop import Trainer

BATCH = 64
MODEL = {"latent_dim": 8, "hidden": [256, 128], "likelihood": "bernoulli"}


def bare_epochs(epochs: int) -> list[float]:
    """A hand-written loop: the same model, permutation per epoch, forward, loss, backward, step."""
    torch.manual_seed(0)
    data = Digits(DigitsConfig(val_fraction=0.0)).load()
    x = data.train["x"]
    model = MLPVAE(MLPVAEConfig(**MODEL), data.info)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    times = []
    for epoch in range(epochs):
        start = time.perf_counter()
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch))
        for b in range(0, len(x), BATCH):
            batch = {"x": x[order[b : b + BATCH]]}
            out = model(batch)
            loss = bernoulli_nll(out.recon, batch["x"]).mean() + out.posterior.kl().mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        times.append(time.perf_counter() - start)
    return times


class EpochTimer(Callback):
    """Wall time of each epoch, from its first batch to its end bookkeeping."""

    def __init__(self, config: None = None) -> None:
        self.times: list[float] = []
        self._start = 0.0

    def on_epoch_start(self, trainer) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, trainer, metrics) -> None:
        self.times.append(time.perf_counter() - self._start)


def vaeforge_epochs(epochs: int, registry) -> list[float]:
    document = {
        "name": "overhead",
        "data": {"name": "digits", "params": {"val_fraction": 0.0}, "batch_size": BATCH},
        "model": {"name": "mlp_vae", "params": MODEL},
        "losses": [{"name": "bce_recon"}, {"name": "kl"}],
        "optimizer": {"name": "adam", "params": {"lr": 1e-3}},
        "trainer": {"epochs": epochs, "log_every_n_steps": 50},
        "callbacks": [{"name": "epoch_timer"}, {"name": "checkpoint", "params": {"every_n_epochs": 0}}],
        "loggers": [{"name": "console", "params": {"progress_bar": "always"}}, {"name": "jsonl"}],
    }
    config = config_from_dict(document, registry)
    with tempfile.TemporaryDirectory() as folder:
        trainer = Trainer(config, registry, Path(folder))
        trainer.loggers[0].stream = io.StringIO()  # the bar is drawn, just not shown
        trainer.fit()
    return trainer.callbacks[0].times


@hookimpl
def register_callbacks(register):
    register("epoch_timer", EpochTimer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 keeps the numbers steady)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pm = make_plugin_manager(autoload=False)
    pm.add_plugin(sys.modules[__name__], PluginInfo(name="benchmark", module=__name__))
    registry = build_registry(pm)
    bare, ours = [], []
    for _ in range(args.rounds):
        bare += bare_epochs(args.epochs)[1:]  # the first epoch of each run warms up
        ours += vaeforge_epochs(args.epochs, registry)[1:]
    b, v = statistics.median(bare), statistics.median(ours)
    print(f"threads: {torch.get_num_threads()}, epochs x rounds: {args.epochs} x {args.rounds}")
    print(f"bare PyTorch loop : {b * 1000:8.2f} ms/epoch (median)")
    print(f"vaeforge Trainer  : {v * 1000:8.2f} ms/epoch (median)")
    print(f"vaeforge / bare   : {v / b:8.3f}  (goal <= 1.05)")


if __name__ == "__main__":
    main()
