"""geoopt, imported on first use and without its import-time TorchScript deprecation warnings."""

from __future__ import annotations

import warnings
from types import ModuleType


def load_geoopt() -> ModuleType:
    """Return the ``geoopt`` module, importing it (quietly) if needed.

    geoopt decorates its math with ``torch.jit.script``, which current torch
    deprecates with a FutureWarning per function at import time; those say
    nothing about a user's run, so they are silenced here and only here.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
        import geoopt
    return geoopt
