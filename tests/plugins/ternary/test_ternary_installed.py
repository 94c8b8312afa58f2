"""Installed smoke test: the distribution declares its entry point."""

from importlib.metadata import entry_points


def test_entry_point_declared():
    assert entry_points(group="vaeforge")["ternary"].value == "vaeforge_ternary.plugin"


def test_entry_point_loads_the_plugin_module():
    import vaeforge_ternary.plugin

    assert entry_points(group="vaeforge")["ternary"].load() is vaeforge_ternary.plugin
