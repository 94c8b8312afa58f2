"""``console``: a tqdm progress bar with live metrics, or plain epoch lines when not on a terminal."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

from attrs import field, frozen
from attrs.validators import ge, in_

from vaeforge.api import Logger, LossResult


@frozen(kw_only=True)
class ConsoleConfig:
    """What the console shows.

    :param progress_bar: ``auto`` shows a tqdm bar when standard error is a terminal; ``always`` and
        ``never`` decide regardless.
    :param epoch_lines: print one summary line per epoch when there is no bar (``train.log`` has them always).
    :param max_terms: loss terms shown in the bar besides the total.
    """

    progress_bar: str = field(default="auto", validator=in_(["auto", "always", "never"]))
    epoch_lines: bool = False
    max_terms: int = field(default=3, validator=ge(0))


def _fmt(value: float) -> str:
    return f"{value:.4g}"


class ConsoleLogger(Logger):
    """Shows ``loss``, the loss terms, ``beta`` (the KL weight), ``val_loss`` and ``patience`` live.

    The bar is updated on every batch (cheap) and its numbers at every log step
    (no extra host syncs). Without a terminal it is quiet (``epoch_lines`` turns on
    one summary line per epoch).
    """

    def __init__(self, config: ConsoleConfig | None, run_dir: Any = None):
        self.config = config or ConsoleConfig()
        self.stream = sys.stderr
        mode = self.config.progress_bar
        self.interactive = mode == "always" or (mode == "auto" and self.stream.isatty())
        self.bar: Any = None
        self.postfix: dict[str, str] = {}

    def on_epoch_start(self, trainer: Any) -> None:
        if not self.interactive:
            return
        from tqdm import tqdm

        self.close_bar()
        self.bar = tqdm(total=trainer.batches.steps_per_epoch, initial=trainer.batch_index, desc=self._desc(trainer),
                        unit="batch", file=self.stream, leave=True, **self._width())

    def _width(self) -> dict[str, Any]:
        """Follow the terminal's size; a terminal that reports none (0 x 0, e.g. a bare pty) gets 120 x 50."""
        try:
            size = os.get_terminal_size(self.stream.fileno())
        except (OSError, ValueError):
            size = os.terminal_size((0, 0))
        return {"dynamic_ncols": True} if size.columns > 0 and size.lines > 0 else {"ncols": 120, "nrows": 50}

    @staticmethod
    def _desc(trainer: Any) -> str:
        stage = f"{trainer.ctx.stage} " if trainer.pipeline else ""
        return f"{stage}Epoch {trainer.epoch + 1}"

    def on_batch_end(self, trainer: Any, result: LossResult) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        train = {k.split("/", 1)[1]: v for k, v in metrics.items() if k.startswith("train/") and k.count("/") == 1}
        if "loss" in train:
            self.postfix["loss"] = _fmt(train["loss"])
            terms = [k for k in train if k not in ("loss", "lr", "grad_norm", "skipped_steps")]
            for name in terms[: self.config.max_terms]:
                self.postfix[name] = _fmt(train[name])
        if "train/weight/kl" in metrics:
            self.postfix["beta"] = _fmt(metrics["train/weight/kl"])
        if "val/loss" in metrics:
            self.postfix["val_loss"] = _fmt(metrics["val/loss"])
        self._refresh()

    def _refresh(self) -> None:
        if self.bar is not None:
            self.bar.set_postfix(self.postfix, refresh=False)

    def on_epoch_end(self, trainer: Any, metrics: Mapping[str, float]) -> None:
        if "patience" in trainer.ctx.values:
            self.postfix["patience"] = str(trainer.ctx.values["patience"])
        if self.bar is not None:
            self._refresh()
            self.close_bar()  # closing draws the bar's final state and leaves it on its line
        elif self.config.epoch_lines:
            shown = {k: v for k, v in metrics.items() if k.count("/") == 1 and not k.startswith("time/")}
            text = ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(shown.items()))
            print(f"{self._desc(trainer)} (step {trainer.global_step}): {text}", file=self.stream, flush=True)

    def close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def close(self) -> None:
        self.close_bar()
