"""``plots``: loss, reconstruction and KL curves as PNG files, redrawn during training.

Uses matplotlib's Agg backend (no display). Axes turn log-log once the run is
past 100 steps. The logged series are kept in memory and checkpointed, so a
resumed run draws the same curves.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from attrs import field, frozen
from attrs.validators import ge

from vaeforge.api import Logger

PLOTS = {
    "loss": ("loss",),
    "recon": ("recon", "bce_recon", "mse_recon", "categorical_recon"),
    "kl": ("kl",),
}
"""Plot file -> the loss terms it shows (first names found, train and val)."""


MAX_POINTS = 2000
"""Points kept per series; beyond it every other older point is dropped (the newest always stays)."""


@frozen(kw_only=True)
class PlotsConfig:
    """When to redraw.

    :param every_n_steps: redraw after this many steps (and at every epoch end).
    :param loglog_after: switch to log-log axes past this many steps.
    """

    every_n_steps: int = field(default=500, validator=ge(1))
    loglog_after: int = field(default=100, validator=ge(1))


class PlotsLogger(Logger):
    """Writes ``plots/loss.png``, ``plots/recon.png`` and ``plots/kl.png``."""

    def __init__(self, config: PlotsConfig | None, run_dir: Path):
        self.config = config or PlotsConfig()
        self.run_dir = Path(run_dir)
        self.folder = self.run_dir / "plots"
        self.series: dict[str, list[tuple[int, float]]] = {}
        self.last_drawn = -1

    def state_dict(self) -> dict[str, Any]:
        return {"series": {k: [list(p) for p in v] for k, v in self.series.items()}, "last_drawn": self.last_drawn}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.series = {k: [(int(s), float(v)) for s, v in points] for k, points in state["series"].items()}
        self.last_drawn = int(state["last_drawn"])

    def _record(self, metrics: Mapping[str, Any], step: int) -> None:
        for name, value in metrics.items():
            if isinstance(value, (int, float)) and (name.startswith(("train/", "val/"))) and name.count("/") == 1:
                points = self.series.setdefault(name, [])
                points.append((step, float(value)))
                if len(points) > MAX_POINTS:  # thin the history: the state stays small on long runs
                    points[:-1] = points[:-1:2]

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self._record(metrics, step)
        if step - self.last_drawn >= self.config.every_n_steps:
            self.draw(step)

    def on_epoch_end(self, trainer: Any, metrics: Mapping[str, float]) -> None:
        self.draw(trainer.global_step)

    def draw(self, step: int) -> dict[str, str]:
        """Redraw every plot now; returns each written file's axis scale (``linear`` or ``log``)."""
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt

        self.folder.mkdir(parents=True, exist_ok=True)
        scales = {}
        for filename, terms in PLOTS.items():
            term = next((t for t in terms if f"train/{t}" in self.series or f"val/{t}" in self.series), None)
            if term is None:
                continue
            figure, axes = plt.subplots(figsize=(6, 4), dpi=100)
            loglog = step > self.config.loglog_after
            for split in ("train", "val"):
                points = self.series.get(f"{split}/{term}", [])
                points = [(s, v) for s, v in points if not loglog or (s > 0 and v > 0)]
                if points:
                    axes.plot([s for s, _ in points], [v for _, v in points], label=split)
            if loglog:
                axes.set_xscale("log")
                axes.set_yscale("log")
            axes.set_xlabel("step")
            axes.set_ylabel(term)
            axes.set_title(f"{term} (step {step})")
            axes.legend()
            axes.grid(True, which="both", alpha=0.3)
            figure.tight_layout()
            tmp = self.folder / f".{filename}.png.tmp"
            figure.savefig(tmp, format="png")
            plt.close(figure)
            tmp.replace(self.folder / f"{filename}.png")
            scales[filename] = "log" if loglog else "linear"
        self.last_drawn = step
        return scales

    def close(self) -> None:
        if self.series:
            self.draw(max(s for points in self.series.values() for s, _ in points))
