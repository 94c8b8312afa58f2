"""vaeforge's loop against a bare PyTorch loop: seconds per epoch, same model, data and optimizer.

Both loops train the built-in ``mlp_vae`` on the binarized digits (in memory,
batch 64, Adam 1e-3, BCE + KL) in the same process: before every vaeforge
epoch a callback runs one bare epoch, so each pair is measured under the same
machine conditions, and the median of the per-pair ratios is reported.
vaeforge runs with its progress bar (forced on, drawn to a null stream) and
JSONL logging; checkpoints are off because the bare loop writes none.
Printed, never asserted:

    python benchmarks/trainer_overhead.py [--epochs 40] [--threads 1]

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


class BareLoop:
    """A hand-written loop: the same model, a permutation per epoch, forward, loss, backward, step."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        data = Digits(DigitsConfig(val_fraction=0.0)).load()
        self.x = data.train["x"]
        self.model = MLPVAE(MLPVAEConfig(**MODEL), data.info)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.epoch = 0

    def run_epoch(self) -> float:
        """Train one epoch; its wall time in seconds."""
        start = time.perf_counter()
        x, model, optimizer = self.x, self.model, self.optimizer
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(self.epoch))
        for b in range(0, len(x), BATCH):
            batch = {"x": x[order[b : b + BATCH]]}
            out = model(batch)
            loss = bernoulli_nll(out.recon, batch["x"]).mean() + out.posterior.kl().mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        self.epoch += 1
        return time.perf_counter() - start


class PairedTimer(Callback):
    """Times each vaeforge epoch and, just before it, one epoch of the bare loop.

    A vaeforge epoch is timed from its start to the next epoch's start, so it
    covers everything the loop does per epoch (batches, step logging, epoch-end
    bookkeeping, callbacks); the bare epoch runs outside that interval. Pairing
    the two epochs back to back puts both under the same machine conditions,
    which on a shared VM swing by tens of percent between runs.
    """

    def __init__(self, config: None = None) -> None:
        self.bare = BareLoop()
        self.pairs: list[tuple[float, float]] = []
        self._bare_time = 0.0
        self._start: float | None = None

    def on_epoch_start(self, trainer) -> None:
        if self._start is not None:
            self.pairs.append((self._bare_time, time.perf_counter() - self._start))
        self._bare_time = self.bare.run_epoch()
        self._start = time.perf_counter()


def paired_epochs(epochs: int, registry) -> list[tuple[float, float]]:
    """(bare, vaeforge) seconds for each epoch after the first ``epochs`` - 1 pairs, see :class:`PairedTimer`."""
    document = {
        "name": "overhead",
        "data": {"name": "digits", "params": {"val_fraction": 0.0}, "batch_size": BATCH},
        "model": {"name": "mlp_vae", "params": MODEL},
        "losses": [{"name": "bce_recon"}, {"name": "kl"}],
        "optimizer": {"name": "adam", "params": {"lr": 1e-3}},
        "trainer": {"epochs": epochs, "log_every_n_steps": 50},
        "callbacks": [{"name": "paired_timer"}, {"name": "checkpoint", "params": {"every_n_epochs": 0}}],
        "loggers": [{"name": "console", "params": {"progress_bar": "always"}}, {"name": "jsonl"}],
    }
    config = config_from_dict(document, registry)
    with tempfile.TemporaryDirectory() as folder:
        trainer = Trainer(config, registry, Path(folder))
        trainer.loggers[0].stream = io.StringIO()  # the bar is drawn, just not shown
        trainer.fit()
    return trainer.callbacks[0].pairs


@hookimpl
def register_callbacks(register):
    register("paired_timer", PairedTimer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=2, help="leading pairs left out")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 keeps the numbers steady)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pm = make_plugin_manager(autoload=False)
    pm.add_plugin(sys.modules[__name__], PluginInfo(name="benchmark", module=__name__))
    registry = build_registry(pm)
    pairs = paired_epochs(args.epochs, registry)[args.warmup :]
    bare = statistics.median(b for b, _ in pairs)
    ours = statistics.median(v for _, v in pairs)
    ratios = sorted(v / b for b, v in pairs)
    low, high = ratios[len(ratios) // 4], ratios[(3 * len(ratios)) // 4]
    print(f"threads: {torch.get_num_threads()}, epoch pairs: {len(pairs)}")
    print(f"bare PyTorch loop : {bare * 1000:8.2f} ms/epoch (median)")
    print(f"vaeforge Trainer  : {ours * 1000:8.2f} ms/epoch (median)")
    print(f"vaeforge / bare   : {statistics.median(ratios):8.3f}  (median of paired ratios; "
          f"quartiles {low:.3f}-{high:.3f}; goal <= 1.05)")


if __name__ == "__main__":
    main()
