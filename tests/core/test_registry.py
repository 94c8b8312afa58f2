"""The registry: one namespace per kind, duplicate names refused, unknown names explained, lazy factories."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from attrs import frozen

from vaeforge import hookimpl
from vaeforge.errors import ComponentError, PluginError
from vaeforge.plugins import PluginInfo, PluginWarning
from vaeforge.registry import KINDS, Registry


@frozen
class NoiseConfig:
    """Noise settings.

    :param sigma: the standard deviation.
    """

    sigma: float = 0.1


def noise(config: NoiseConfig) -> str:
    """Adds Gaussian noise.

    More text that ``doc`` leaves out.
    """
    return f"noise({config.sigma})"


def test_kinds_cover_every_registration_hook() -> None:
    from vaeforge.hookspecs import REGISTRATION_HOOKS

    assert KINDS == ("model", "loss", "callback", "data_source", "logger", "optimizer", "scheduler", "schedule",
                     "metric", "preset")
    assert tuple(REGISTRATION_HOOKS) == KINDS


def test_register_get_and_build() -> None:
    registry = Registry()
    component = registry.register("loss", "noise", noise, NoiseConfig, plugin="mine")
    assert registry.get("loss", "noise") is component
    assert ("loss", "noise") in registry and ("model", "noise") not in registry
    assert (component.kind, component.name, component.config) == ("loss", "noise", NoiseConfig)
    assert component.plugin == "mine"
    assert component.doc == "Adds Gaussian noise."
    assert registry.build("loss", "noise", NoiseConfig(sigma=0.5)) == "noise(0.5)"


def test_a_duplicate_name_is_an_error_naming_both_plugins() -> None:
    registry = Registry()
    registry.register("loss", "noise", noise, plugin="first")
    with pytest.raises(ComponentError) as info:
        registry.register("loss", "noise", noise, plugin="second")
    assert str(info.value) == "loss 'noise' is registered twice: by plugin 'first' and by plugin 'second'"
    registry.register("model", "noise", noise, plugin="second")  # kinds are separate namespaces


def test_a_duplicate_across_plugins_fails_the_second_plugin(vaeforge_pm, vaeforge_registry) -> None:
    class Copycat:
        @hookimpl
        def register_losses(self, register):
            register("kl", noise)

    vaeforge_pm.add_plugin(Copycat(), PluginInfo(name="copycat", module="copycat", distribution="vaeforge-copycat",
                                                 version="2.0"))
    with pytest.warns(PluginWarning) as record:
        registry = vaeforge_registry()
    assert [str(w.message) for w in record] == [
        "plugin 'copycat' (vaeforge-copycat 2.0) failed to load and was skipped: register_losses: ComponentError: "
        "loss 'kl' is registered twice: by plugin 'vaeforge' and by plugin 'copycat'"]
    assert registry.get("loss", "kl").plugin == "vaeforge"


def test_an_unknown_name_lists_what_is_available_with_a_did_you_mean() -> None:
    registry = Registry()
    for name in ("adam", "adamw", "sgd"):
        registry.register("optimizer", name, noise, plugin="p")
    with pytest.raises(ComponentError) as info:
        registry.get("optimizer", "adma")
    assert str(info.value) == "unknown optimizer 'adma'; did you mean 'adam'? (available: adam, adamw, sgd)"
    with pytest.raises(ComponentError, match=r"^unknown metric 'fid' \(available: none\)$"):
        registry.get("metric", "fid")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("losses", "x", noise), "plugin 'p': unknown component kind 'losses'; did you mean 'loss'?"),
        (("loss", "", noise), "plugin 'p': a loss name must be a non-empty string, got ''"),
        (("loss", "x", noise, dict), "plugin 'p': loss 'x': config must be an attrs class, got <class 'dict'>"),
    ],
)
def test_bad_registrations(args: tuple, message: str) -> None:
    with pytest.raises(ComponentError) as info:
        Registry().register(*args, plugin="p")
    assert str(info.value) == message


@pytest.fixture
def lazy_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module on sys.path that records being imported."""
    name = "vaeforge_lazy_probe"
    (tmp_path / f"{name}.py").write_text(
        '"""Imported only when a factory is loaded."""\n\n\n'
        "class Outer:\n    class Inner:\n        pass\n\n\n"
        "def build(config):\n    return ('built', config)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    yield name
    sys.modules.pop(name, None)


def test_string_factories_are_imported_on_first_use_only(lazy_module: str) -> None:
    registry = Registry()
    registry.register("loss", "lazy", f"{lazy_module}:build", plugin="p")
    registry.register("model", "nested", f"{lazy_module}:Outer.Inner", plugin="p")
    component = registry.get("loss", "lazy")
    assert component.doc == ""  # describing it does not import it
    list(registry.components())
    assert lazy_module not in sys.modules
    assert registry.build("loss", "lazy", None) == ("built", None)
    assert lazy_module in sys.modules
    assert registry.get("model", "nested").load() is sys.modules[lazy_module].Outer.Inner


def test_build_reports_factory_errors_naming_the_component_and_plugin() -> None:
    def picky(config):
        raise ValueError("sigma must be positive")

    registry = Registry()
    registry.register("loss", "picky", picky, plugin="mine")
    with pytest.raises(ComponentError, match=r"^loss 'picky' \(plugin 'mine'\): sigma must be positive$"):
        registry.build("loss", "picky", None)


def test_optimizer_and_scheduler_factories_get_their_first_argument_before_the_config() -> None:
    registry = Registry()
    registry.register("optimizer", "o", lambda params, config: (params, config), plugin="p")
    registry.register("scheduler", "s", lambda opt, config, total: (opt, config, total), plugin="p")
    assert registry.build("optimizer", "o", "cfg", ["w"]) == (["w"], "cfg")
    assert registry.build("scheduler", "s", "cfg", "opt", 100) == ("opt", "cfg", 100)


def test_components_of_a_failed_plugin_are_removed_and_explained() -> None:
    info = PluginInfo(name="flaky", module="flaky", distribution="vaeforge-flaky", version="0.4", error="boom")
    registry = Registry(failures={"flaky": info})
    registry.register("loss", "flaky_loss", noise, plugin="flaky")
    registry.register("loss", "solid", noise, plugin="other")
    registry.record_failure("flaky")
    assert registry.names("loss") == ["solid"]
    with pytest.raises(PluginError) as caught:
        registry.get("loss", "flaky_loss")
    assert str(caught.value) == ("loss 'flaky_loss' comes from plugin 'flaky' (vaeforge-flaky 0.4), "
                                 "which failed to load: boom")
    with pytest.raises(ComponentError) as caught:
        registry.get("loss", "other_loss")
    assert str(caught.value) == ("unknown loss 'other_loss' (available: solid); it may come from a plugin "
                                 "that failed to load: plugin 'flaky' (vaeforge-flaky 0.4): boom")


def test_components_are_sorted_by_kind_then_name() -> None:
    registry = Registry()
    registry.register("loss", "b", noise, plugin="p")
    registry.register("model", "z", noise, plugin="p")
    registry.register("loss", "a", noise, plugin="p")
    assert [(c.kind, c.name) for c in registry.components()] == [("model", "z"), ("loss", "a"), ("loss", "b")]
    assert [c.name for c in registry.components("loss")] == ["a", "b"]
