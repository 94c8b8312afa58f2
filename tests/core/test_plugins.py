"""The plugin manager: discovery through entry points, allow and deny lists, and broken plugins.

``fake_dists/`` holds a plugin that exists only as a committed
``vaeforge_fakeplugin-1.2.3.dist-info`` next to its module; ``broken_dists/``
holds five plugins that each fail in one way. Putting a folder on
``sys.path`` is all ``importlib.metadata`` needs to find them.
"""

from __future__ import annotations

import json
import sys
import warnings
from importlib import metadata
from pathlib import Path

import pytest

from tests.core.clirun import cli_env, finish, run_cli, spawn_cli
from vaeforge import hookimpl
from vaeforge.errors import PluginError
from vaeforge.plugins import PluginInfo, PluginWarning, build_registry, load_registry

HERE = Path(__file__).parent
FAKE = HERE / "fake_dists"
BROKEN = HERE / "broken_dists"
FAKE_MODULES = ("vaeforge_fakeplugin", "vaeforge_fakeplugin_heavy")

BROKEN_PLUGINS = {
    # entry-point name: (component it would add, the warning's cause)
    "broken_import": ("never_loss", "ModuleNotFoundError: No module named 'vaeforge_missing_dependency'"),
    "broken_register": ("flaky_loss", "register_losses: RuntimeError: the GPU driver is too old"),
    "bad_signature": ("signature_loss", "PluginValidationError: register_losses(register, device) asks for "
                                        "{'device'}, which the hookspec register_losses(register) does not provide"),
    "misspelled_hook": ("misspelled_loss",
                        "PluginValidationError: unknown hook 'register_loss'; did you mean 'register_losses'?"),
    "duplicate_name": ("dup_extra", "register_losses: ComponentError: loss 'kl' is registered twice: "
                                    "by plugin 'vaeforge' and by plugin 'duplicate_name'"),
}
VERSIONS = {"broken_import": "0.3.0", "broken_register": "0.4.0", "bad_signature": "0.5.0",
            "misspelled_hook": "0.6.0", "duplicate_name": "0.7.0"}


def describe(name: str) -> str:
    """How messages name a broken plugin: entry point, distribution and version."""
    return f"plugin {name!r} (vaeforge-{name.replace('_', '-')} {VERSIONS[name]})"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("VAEFORGE_PLUGINS", "VAEFORGE_DISABLE_PLUGINS", "VAEFORGE_DISABLE_PLUGIN_AUTOLOAD",
                     "VAEFORGE_STRICT_PLUGINS"):
        monkeypatch.delenv(variable, raising=False)
    for module in FAKE_MODULES + tuple(f"vaeforge_{name}" for name in BROKEN_PLUGINS):
        monkeypatch.delitem(sys.modules, module, raising=False)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> None:
    """The well-behaved fake plugin is installed."""
    monkeypatch.syspath_prepend(str(FAKE))


@pytest.fixture
def broken(monkeypatch: pytest.MonkeyPatch, fake: None) -> None:
    """The five broken plugins are installed too."""
    monkeypatch.syspath_prepend(str(BROKEN))


def loaded(pm) -> list[str]:
    return [name for name, info in pm.infos.items() if info.error is None]


# -- discovery ------------------------------------------------------------------------------


def test_the_fake_plugin_is_found_only_through_its_entry_point(fake: None) -> None:
    pm, registry = load_registry(autoload=False)
    assert ("loss", "fake_l1") not in registry
    assert "vaeforge_fakeplugin" not in sys.modules

    (entry_point,) = [ep for ep in metadata.entry_points(group="vaeforge") if ep.name == "fakeplugin"]
    assert entry_point.value == "vaeforge_fakeplugin"

    pm, registry = load_registry()
    info = pm.infos["fakeplugin"]
    assert (info.module, info.distribution, info.version, info.error) == (
        "vaeforge_fakeplugin", "vaeforge-fakeplugin", "1.2.3", None)
    component = registry.get("loss", "fake_l1")
    assert component.plugin == "fakeplugin"
    assert component.config.__name__ == "ScaledL1Config"
    assert registry.get("loss", "kl").plugin == "vaeforge"  # the built-ins load the same way, first
    assert list(pm.infos)[0] == "vaeforge"


def test_a_lazy_factory_is_not_imported_until_the_component_is_built(fake: None) -> None:
    _, registry = load_registry()
    assert "vaeforge_fakeplugin" in sys.modules
    assert "vaeforge_fakeplugin_heavy" not in sys.modules
    callback = registry.build("callback", "fake_heavy", None)
    assert type(callback).__name__ == "HeavyCallback"
    assert "vaeforge_fakeplugin_heavy" in sys.modules


def test_a_plugin_preset_loads_through_the_registry(fake: None) -> None:
    from vaeforge.config import load_config

    _, registry = load_registry()
    config = load_config("fake-tiny", registry, ["trainer.epochs=1"])
    assert config.losses[0].params.scale == 2.0


def test_a_plugin_adds_a_subcommand(fake: None, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "fake-hello", "world")
    assert (result.code, result.out) == (0, "hello world\n")


# -- environment variables ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({}, ["vaeforge", "fakeplugin"]),
        ({"VAEFORGE_DISABLE_PLUGIN_AUTOLOAD": "1"}, ["vaeforge"]),
        ({"VAEFORGE_PLUGINS": ""}, ["vaeforge"]),
        ({"VAEFORGE_PLUGINS": "fakeplugin"}, ["vaeforge", "fakeplugin"]),
        ({"VAEFORGE_PLUGINS": " fakeplugin , "}, ["vaeforge", "fakeplugin"]),
        ({"VAEFORGE_DISABLE_PLUGINS": "fakeplugin"}, ["vaeforge"]),
        ({"VAEFORGE_PLUGINS": "fakeplugin", "VAEFORGE_DISABLE_PLUGINS": "fakeplugin"}, ["vaeforge"]),
    ],
)
def test_environment_selects_plugins(variables: dict[str, str], expected: list[str], fake: None,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    for variable, value in variables.items():
        monkeypatch.setenv(variable, value)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pm, registry = load_registry()
    ours = [name for name in pm.infos if name in ("vaeforge", "fakeplugin")]  # other installed plugins aside
    assert ours == expected
    if "VAEFORGE_PLUGINS" in variables or "VAEFORGE_DISABLE_PLUGIN_AUTOLOAD" in variables:
        assert list(pm.infos) == expected
    assert (("loss", "fake_l1") in registry) == ("fakeplugin" in expected)


def test_an_allow_list_skips_broken_plugins_without_a_word(broken: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAEFORGE_PLUGINS", "fakeplugin")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pm, _ = load_registry()
    assert loaded(pm) == ["vaeforge", "fakeplugin"]
    assert not any(f"vaeforge_{name}" in sys.modules for name in BROKEN_PLUGINS)


def test_an_allow_list_naming_a_missing_plugin_warns(fake: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAEFORGE_PLUGINS", "fakeplugin,fakeplugn")
    with pytest.warns(PluginWarning) as record:
        pm, _ = load_registry()
    assert [str(w.message) for w in record] == ["VAEFORGE_PLUGINS names 'fakeplugn', but no such plugin is installed"]
    assert loaded(pm) == ["vaeforge", "fakeplugin"]


# -- broken plugins -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(BROKEN_PLUGINS))
def test_a_broken_plugin_is_one_warning_and_the_others_still_load(name: str, broken: None,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAEFORGE_PLUGINS", f"fakeplugin,{name}")
    with pytest.warns(PluginWarning) as record:
        pm, registry = load_registry()
    cause = BROKEN_PLUGINS[name][1]
    assert [str(w.message) for w in record] == [f"{describe(name)} failed to load and was skipped: {cause}"]
    assert pm.failures[name].error == cause
    assert loaded(pm) == ["vaeforge", "fakeplugin"]
    assert ("loss", "fake_l1") in registry and ("loss", "kl") in registry
    assert registry.get("loss", "kl").plugin == "vaeforge"
    assert ("loss", BROKEN_PLUGINS[name][0]) not in registry


@pytest.mark.parametrize("name", list(BROKEN_PLUGINS))
def test_a_config_using_a_broken_plugin_names_plugin_distribution_version_and_cause(
    name: str, broken: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VAEFORGE_PLUGINS", f"fakeplugin,{name}")
    monkeypatch.chdir(tmp_path)
    component, cause = BROKEN_PLUGINS[name]
    Path("run.yaml").write_text(f"name: x\ndata: {{name: synthetic}}\nmodel: {{name: mlp_vae}}\n"
                                f"losses: [{{name: {component}}}]\n")
    with pytest.warns(PluginWarning):
        result = run_cli(capsys, "train", "run.yaml", "--run-dir", "run")
    assert result.code == 2
    (line,) = result.errors
    assert line.startswith("run.yaml:4: $.losses[0].name: ")
    assert f"{describe(name)}" in line and cause in line
    assert not Path("run").exists()


def test_a_config_using_only_working_plugins_is_fine_despite_broken_ones(
    broken: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VAEFORGE_PLUGINS", ",".join(["fakeplugin", *BROKEN_PLUGINS]))
    monkeypatch.chdir(tmp_path)
    Path("run.yaml").write_text("name: x\ndata: {name: synthetic}\nmodel: {name: mlp_vae}\n"
                                "losses: [{name: fake_l1}, {name: kl}]\n")
    with pytest.warns(PluginWarning) as record:
        result = run_cli(capsys, "validate", "run.yaml")
    assert len(record) == len(BROKEN_PLUGINS)
    assert (result.code, result.out) == (0, "ok: run.yaml is a valid config for run 'x'\n")


def test_strict_mode_makes_a_broken_plugin_an_error(broken: None, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("VAEFORGE_STRICT_PLUGINS", "1")
    monkeypatch.setenv("VAEFORGE_PLUGINS", "fakeplugin,broken_register")
    result = run_cli(capsys, "plugins")
    assert result.code == 2
    assert result.errors == [f"{describe('broken_register')} failed to load: register_losses: RuntimeError: "
                             "the GPU driver is too old (VAEFORGE_STRICT_PLUGINS=1 makes this an error)"]
    monkeypatch.setenv("VAEFORGE_PLUGINS", "fakeplugin")
    assert run_cli(capsys, "plugins").code == 0


# -- in-process plugins (the vaeforge_pm fixture) -------------------------------------------------------


class WrongSignature:
    @hookimpl
    def register_models(self, register, registry):
        register("m", object)


class Misspelled:
    @hookimpl
    def register_model(self, register):
        register("m", object)


class Exploding:
    @hookimpl
    def register_models(self, register):
        register("exploding_model", object)
        raise RuntimeError("no")


def test_add_plugin_validates_and_records_failures(vaeforge_pm) -> None:
    with pytest.warns(PluginWarning) as record:
        assert vaeforge_pm.add_plugin(WrongSignature(), PluginInfo(name="wrong", module="tests")) is False
        assert vaeforge_pm.add_plugin(Misspelled(), PluginInfo(name="typo", module="tests")) is False
    assert [str(w.message) for w in record] == [
        "plugin 'wrong' (tests) failed to load and was skipped: PluginValidationError: register_models(register, "
        "registry) asks for {'registry'}, which the hookspec register_models(register) does not provide",
        "plugin 'typo' (tests) failed to load and was skipped: PluginValidationError: unknown hook "
        "'register_model'; did you mean 'register_models'?",
    ]
    assert vaeforge_pm.get_plugin("wrong") is None and vaeforge_pm.get_plugin("typo") is None
    vaeforge_pm.check_pending()  # nothing of theirs is left behind


def test_add_plugin_names_a_module_plugin_after_the_module(vaeforge_pm, vaeforge_registry) -> None:
    import vaeforge.builtin.plugin as builtin_plugin

    class Extra:
        __name__ = "extra_plugin"

        @hookimpl
        def register_losses(self, register):
            register("extra", object)

    assert vaeforge_pm.add_plugin(Extra()) is True
    assert vaeforge_registry().get("loss", "extra").plugin == "extra_plugin"
    assert vaeforge_pm.get_plugin("vaeforge") is builtin_plugin


def test_a_plugin_registered_directly_is_still_reported_by_name(vaeforge_pm) -> None:
    vaeforge_pm.register(Exploding(), name="raw")
    with pytest.warns(PluginWarning, match=r"^plugin 'raw' \(raw\) failed to load and was skipped: "
                                           r"register_models: RuntimeError: no$"):
        registry = build_registry(vaeforge_pm)
    with pytest.raises(PluginError, match="comes from plugin 'raw'"):
        registry.get("model", "exploding_model")


# -- vaeforge plugins, as a user runs it ---------------------------------------------------------------


def test_plugins_command_lists_every_plugin_its_components_and_load_errors(tmp_path: Path) -> None:
    allow = ",".join(["fakeplugin", *BROKEN_PLUGINS])  # leave out whatever else is installed here
    result = finish(spawn_cli("plugins", cwd=tmp_path, env=cli_env([FAKE, BROKEN], VAEFORGE_PLUGINS=allow)))
    assert result.code == 0
    assert "Traceback" not in result.err
    warning_lines = result.err.splitlines()
    assert sorted(warning_lines) == sorted(
        f"warning: {describe(name)} failed to load and was skipped: {cause}"
        for name, (_, cause) in BROKEN_PLUGINS.items())
    out = result.out.splitlines()
    block = out[out.index("fakeplugin (vaeforge-fakeplugin 1.2.3)"):][:4]
    assert block == ["fakeplugin (vaeforge-fakeplugin 1.2.3)", "  loss: fake_l1", "  callback: fake_heavy",
                     "  preset: fake-tiny"]
    assert out[0].startswith("vaeforge (vaeforge ")
    assert "  loss: bce_recon, categorical_recon, kl, mse_recon" in out
    for name, (_, cause) in BROKEN_PLUGINS.items():
        header = out.index(f"{name} (vaeforge-{name.replace('_', '-')} {VERSIONS[name]})")
        assert out[header + 1] == f"  failed to load: {cause}"


def test_plugins_json(fake: None, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "plugins", "--json")
    rows = {row["name"]: row for row in json.loads(result.out)}
    assert rows["fakeplugin"] == {"name": "fakeplugin", "distribution": "vaeforge-fakeplugin", "version": "1.2.3",
                                  "module": "vaeforge_fakeplugin", "error": None,
                                  "components": ["loss:fake_l1", "callback:fake_heavy", "preset:fake-tiny"]}
    assert "model:mlp_vae" in rows["vaeforge"]["components"]
