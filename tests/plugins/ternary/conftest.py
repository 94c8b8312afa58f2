"""Shared fixtures of the vaeforge-ternary tests."""

from __future__ import annotations

import pytest

from vaeforge.api import DataInfo
from vaeforge.plugins import PluginInfo
from vaeforge_ternary import plugin
from vaeforge_ternary.ops import NUM_OPS


@pytest.fixture
def ternary_registry(vaeforge_pm, vaeforge_registry):
    """A registry with the built-ins and this plugin, registered in-process."""
    assert vaeforge_pm.add_plugin(plugin, PluginInfo(name="ternary", module="vaeforge_ternary.plugin"))
    vaeforge_pm.check_pending()
    return vaeforge_registry()


@pytest.fixture
def ternary_info():
    """The DataInfo of the full ``ternary_ops`` data."""
    return DataInfo(shape=(9,), kind="categorical", num_classes=3, num_train=NUM_OPS)
