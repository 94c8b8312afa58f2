"""pytest plugin for vaeforge and its plugins (registered under ``pytest11``).

Fixtures:

``vaeforge_pm``
    a fresh :class:`~vaeforge.plugins.PluginManager` with the built-ins
    registered and entry-point discovery off; register the plugin under test
    with ``vaeforge_pm.add_plugin(module, PluginInfo(name=..., module=...))``
    (or ``add_plugin(module)`` to name it after the module), which validates
    its hookimpls and returns False, with a warning, when they are wrong.
``vaeforge_registry``
    a function building the registry from ``vaeforge_pm``.

Example::

    def test_registers(vaeforge_pm, vaeforge_registry):
        assert vaeforge_pm.add_plugin(vaeforge_mine.plugin, PluginInfo(name="mine", module="vaeforge_mine.plugin"))
        assert vaeforge_registry().get("loss", "mine_l1").plugin == "mine"
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from vaeforge.plugins import PluginManager, build_registry, make_plugin_manager
from vaeforge.registry import Registry


@pytest.fixture
def vaeforge_pm() -> PluginManager:
    """A plugin manager with only the built-ins; nothing is discovered."""
    return make_plugin_manager(autoload=False)


@pytest.fixture
def vaeforge_registry(vaeforge_pm: PluginManager) -> Callable[[], Registry]:
    """Build the registry of ``vaeforge_pm`` (call it after registering your plugin)."""
    return lambda: build_registry(vaeforge_pm)
