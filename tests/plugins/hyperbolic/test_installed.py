"""Installed smoke test: the distribution declares its entry point."""

from importlib.metadata import entry_points


def test_entry_point_declared():
    assert entry_points(group="vaeforge")["hyperbolic"].value == "vaeforge_hyperbolic.plugin"


def test_entry_point_loads_the_plugin_module():
    import vaeforge_hyperbolic.plugin

    assert entry_points(group="vaeforge")["hyperbolic"].load() is vaeforge_hyperbolic.plugin
