"""The plugin template follows the naming and layout rules it teaches, and CI runs its tests."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")

ROOT = Path(__file__).parents[2]
PACKAGES = sorted(p for p in (ROOT / "contrib").iterdir() if (p / "pyproject.toml").is_file())


def test_the_template_exists_and_ci_runs_its_tests() -> None:
    assert ROOT / "contrib" / "template" in PACKAGES
    testpaths = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["testpaths"]
    assert "contrib/template/tests" in testpaths


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_names_follow_the_convention(package: Path) -> None:
    project = tomllib.loads((package / "pyproject.toml").read_text())["project"]
    (name, value), = project["entry-points"]["vaeforge"].items()
    assert project["name"] == f"vaeforge-{name}"
    assert value == f"vaeforge_{name}.plugin"
    assert (package / "src" / f"vaeforge_{name}" / "plugin.py").is_file()
    assert (package / "README.md").is_file() and list((package / "tests").glob("test_*.py"))
    assert any(dep.startswith("vaeforge") for dep in project["dependencies"])


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_plugin_module_imports_only_vaeforge_at_the_top(package: Path) -> None:
    """Loading a plugin must stay cheap: component modules are imported inside the hooks."""
    (plugin,) = (package / "src").glob("vaeforge_*/plugin.py")
    tree = ast.parse(plugin.read_text())
    modules = [alias.name for node in tree.body if isinstance(node, ast.Import) for alias in node.names]
    modules += [node.module for node in tree.body if isinstance(node, ast.ImportFrom)]
    assert set(modules) <= {"__future__", "vaeforge", "pathlib"}, modules
