"""Errors that vaeforge reports to a user rather than as a traceback.

Every :class:`UserError` is caught by the CLI, printed as one line per problem
and turned into exit code 2. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence


class UserError(Exception):
    """A problem in what the user gave us (a file, a config, a plugin set).

    :param lines: one human-readable line per problem, each already naming
        where the problem is (file, ``$.`` path, plugin).
    """

    def __init__(self, lines: str | Sequence[str]):
        self.lines = [lines] if isinstance(lines, str) else list(lines)
        super().__init__("\n".join(self.lines))


class ConfigError(UserError):
    """A run configuration that cannot be loaded, structured or validated."""


class PluginError(UserError):
    """A plugin that failed to import, register or validate."""


class ComponentError(UserError):
    """An unknown component name, or a duplicate registration."""


class CheckpointError(UserError):
    """A checkpoint that is missing, incomplete, tampered with or unsafe."""


class RunFolderError(UserError):
    """A run folder that cannot be written or resumed."""


class NonFiniteError(RuntimeError):
    """Training stopped after too many consecutive non-finite steps."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ``"; did you mean 'x'?"`` for the closest choice, or ``""``.

    A choice is close when it is spelled alike (difflib), or when one is the
    initials of the other's ``_``-separated words, so ``lerning_rate``
    suggests ``lr`` and ``wd`` suggests ``weight_decay``.
    """
    choices = [c for c in choices if isinstance(c, str)]
    if not isinstance(word, str):
        return ""
    matches = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if not matches:
        matches = [c for c in choices if _abbreviates(c, word) or _abbreviates(word, c)][:1]
    return f"; did you mean {matches[0]!r}?" if matches else ""


def _abbreviates(short: str, long: str) -> bool:
    """True when ``short`` is the initials of the words of ``long`` (``lr`` / ``learning_rate``)."""
    words = [w for w in long.lower().split("_") if w]
    return len(words) > 1 and short.lower() == "".join(w[0] for w in words)
