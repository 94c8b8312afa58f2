"""``jsonl``: one JSON object per log call in ``metrics.jsonl`` (and ``metrics_<stage>.jsonl`` in pipelines)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from pathlib import Path

from attrs import frozen

from vaeforge.api import Logger


@frozen(kw_only=True)
class JSONLConfig:
    """Where metrics go.

    :param filename: the file in the run folder.
    """

    filename: str = "metrics.jsonl"


class JSONLLogger(Logger):
    """Appends ``{"step": N, "stage": ..., <metrics>}`` lines; each line is flushed at once."""

    accepts_stage = True

    def __init__(self, config: JSONLConfig | None, run_dir: Path):
        self.path = Path(run_dir) / (config or JSONLConfig()).filename
        self._files: dict[Path, object] = {}

    def _write(self, path: Path, record: Mapping[str, object]) -> None:
        handle = self._files.get(path)
        if handle is None:
            handle = self._files[path] = open(path, "a", encoding="utf-8")  # noqa: SIM115 - kept open
        handle.write(json.dumps(record) + "\n")  # type: ignore[attr-defined]
        handle.flush()  # type: ignore[attr-defined]

    def log_metrics(self, metrics: Mapping[str, float], step: int, stage: str | None = None) -> None:
        record = {"step": step, **({"stage": stage} if stage else {}), **metrics}
        self._write(self.path, record)
        if stage:
            self._write(self.path.with_name(f"{self.path.stem}_{stage}{self.path.suffix}"), record)

    def state_dict(self) -> dict[str, int]:
        """Each file's size now; restoring truncates back to it, so a resumed run rewrites nothing twice."""
        return {path.name: path.stat().st_size for path in self._known_files()}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        """Cut each file back to its size at the checkpoint; a file that is shorter (lines lost
        in an operating-system crash) is cut back to its last whole line, never padded."""
        for path in self._known_files():
            size = state.get(path.name, 0)
            with open(path, "r+b") as handle:
                if path.stat().st_size < size:
                    warnings.warn(f"{path} is shorter than when the checkpoint was written; lines are missing",
                                  RuntimeWarning, stacklevel=2)
                    size = path.read_bytes().rfind(b"\n") + 1
                handle.truncate(size)

    def _known_files(self) -> list[Path]:
        pattern = f"{self.path.stem}*{self.path.suffix}"
        return sorted(p for p in self.path.parent.glob(pattern) if p.is_file())

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()  # type: ignore[attr-defined]
        self._files.clear()
