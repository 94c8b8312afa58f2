"""Dispatch of events to callbacks and loggers, with loggers isolated from failures.

Callbacks and loggers both receive the ``on_<event>`` methods they define.
``on_batch_end`` runs on the hot path, so it is only called on objects that
override it. A logger that raises is switched off with one warning and the
run goes on; a callback that raises stops the run (it may be a controller the
run depends on).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from typing import Any

from vaeforge.api import Callback, Logger

log = logging.getLogger("vaeforge")


def _overrides(obj: Any, method: str, base: type) -> bool:
    implementation = getattr(type(obj), method, None)
    return implementation is not None and implementation is not getattr(base, method, None)


class Observers:
    """The run's callbacks and loggers, called in config order (callbacks first)."""

    def __init__(self, callbacks: list[Any], loggers: list[Any]):
        self.callbacks = callbacks
        self.loggers = loggers
        self.disabled: set[int] = set()
        self._batch_end = [c for c in callbacks if _overrides(c, "on_batch_end", Callback)]
        self._batch_end += [lg for lg in loggers if _overrides(lg, "on_batch_end", Callback)]

    def _guarded(self, logger: Any, method: str, *args: Any) -> None:
        if id(logger) in self.disabled:
            return
        function = getattr(logger, method, None)
        if function is None:
            return
        try:
            function(*args)
        except Exception as exc:  # a logger must never take the run down
            self.disabled.add(id(logger))
            cause = f"{type(exc).__name__}: {exc}"
            message = f"logger {type(logger).__name__} failed in {method} ({cause}); it is switched off"
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            log.warning(message)

    def event(self, method: str, *args: Any) -> None:
        """Call ``method`` on every callback and logger that has it."""
        for callback in self.callbacks:
            function = getattr(callback, method, None)
            if function is not None:
                function(*args)
        for logger in self.loggers:
            self._guarded(logger, method, *args)

    def batch_end(self, trainer: Any, result: Any) -> None:
        """``on_batch_end`` on the objects that override it."""
        for observer in self._batch_end:
            if observer in self.loggers:
                self._guarded(observer, "on_batch_end", trainer, result)
            else:
                observer.on_batch_end(trainer, result)

    def call(self, method: str, *args: Any) -> None:
        """Call a logger method (``log_hparams``, ``log_artifact``, ...) on every logger."""
        for logger in self.loggers:
            self._guarded(logger, method, *args)

    def wants_histograms(self) -> bool:
        """True when some logger overrides ``log_histograms`` (so tensors are only gathered when used)."""
        return any(_overrides(lg, "log_histograms", Logger) and id(lg) not in self.disabled for lg in self.loggers)

    def log_metrics(self, metrics: Mapping[str, float], step: int, stage: str | None) -> None:
        """``log_metrics(metrics, step)``; loggers that accept a ``stage`` keyword get it too."""
        for logger in self.loggers:
            if getattr(logger, "accepts_stage", False):
                self._guarded(logger, "log_metrics", metrics, step, stage)
            else:
                self._guarded(logger, "log_metrics", metrics, step)

    def close(self) -> None:
        """Close every logger."""
        for logger in self.loggers:
            self._guarded(logger, "close")

