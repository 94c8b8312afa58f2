"""Fixtures of the reliability tests; the helpers themselves are in ``reliability_helpers``."""

from __future__ import annotations

import pytest
from reliability_helpers import builtin_registry

from vaeforge.registry import Registry


@pytest.fixture(scope="session")
def registry() -> Registry:
    """The built-in components only (no entry points)."""
    return builtin_registry()
