"""The docs cannot drift: hooks, config keys, commands and environment variables are all checked."""

from __future__ import annotations

import importlib.util
import inspect
import re
from pathlib import Path

import pytest

from vaeforge import hookspecs

DOCS = Path(__file__).parents[2] / "docs"
HOOKS = {
    name: f"{name}({', '.join(inspect.signature(spec).parameters)})"
    for name, spec in vars(hookspecs).items()
    if callable(spec) and hasattr(spec, "vaeforge_spec")
}


def headings(path: Path) -> list[str]:
    return [line.lstrip("#").strip() for line in path.read_text().splitlines() if line.startswith("#")]


def test_there_are_hooks_to_check() -> None:
    assert {"register_models", "register_losses", "register_presets", "register_commands"} <= set(HOOKS)
    assert set(hookspecs.REGISTRATION_HOOKS.values()) | {"register_commands"} == set(HOOKS)


@pytest.mark.parametrize("hook", sorted(HOOKS))
def test_every_hook_has_a_section_headed_by_its_signature(hook: str) -> None:
    assert HOOKS[hook] in headings(DOCS / "hooks.md"), f"docs/hooks.md needs a section headed '{HOOKS[hook]}'"


def test_hooks_md_documents_no_hook_that_does_not_exist() -> None:
    documented = [h for h in headings(DOCS / "hooks.md") if re.fullmatch(r"\w+\(.*\)", h)]
    assert sorted(documented) == sorted(HOOKS.values())


@pytest.mark.parametrize("hook", sorted(HOOKS))
def test_every_hookspec_docstring_states_its_contract(hook: str) -> None:
    spec = getattr(hookspecs, hook)
    doc = inspect.getdoc(spec) or ""
    assert "Every implementation is called" in doc or "Stops at the first non-None result" in doc  # call semantics
    for argument in inspect.signature(spec).parameters:
        assert f":param {argument}:" in doc
    assert ".. versionadded::" in doc
    assert all(p.annotation is not inspect.Parameter.empty for p in inspect.signature(spec).parameters.values())


def load_generator():
    spec = importlib.util.spec_from_file_location("generate_config_reference", DOCS / "generate_config_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_config_reference_matches_the_registry() -> None:
    generated = load_generator().render()
    committed = (DOCS / "config-reference.md").read_text()
    assert committed == generated, "docs/config-reference.md is stale: run python docs/generate_config_reference.py"


def test_config_reference_lists_every_builtin_component_and_run_section() -> None:
    import attrs

    from vaeforge.config import RunConfig
    from vaeforge.plugins import load_registry

    text = (DOCS / "config-reference.md").read_text()
    _, registry = load_registry(autoload=False)
    for component in registry.components():
        assert f"`{component.name}`" in text, component.name
    for field in attrs.fields(RunConfig):
        assert f"| `{field.name}` |" in text, field.name


def test_user_guide_covers_every_command_and_environment_variable() -> None:
    from vaeforge import plugins

    guide = (DOCS / "user-guide.md").read_text()
    for command in ("train", "resume", "validate", "config show", "plugins", "components", "presets", "sample",
                    "evaluate"):
        assert f"vaeforge {command}" in guide, command
    variables = set(re.findall(r"VAEFORGE_[A-Z_]+", inspect.getsource(plugins)))
    assert variables >= {"VAEFORGE_PLUGINS", "VAEFORGE_DISABLE_PLUGINS", "VAEFORGE_DISABLE_PLUGIN_AUTOLOAD",
                         "VAEFORGE_STRICT_PLUGINS"}
    for variable in variables:
        assert variable in guide, variable


@pytest.mark.parametrize("page", ["user-guide.md", "config-reference.md", "hooks.md", "plugin-guide.md", "design.md"])
def test_relative_links_point_at_files_that_exist(page: str) -> None:
    text = (DOCS / page).read_text()
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
        assert (DOCS / target).exists(), f"{page} links to missing {target}"
