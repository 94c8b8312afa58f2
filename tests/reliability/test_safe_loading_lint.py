"""No source file loads data in a way that can run code.

An AST scan over ``core/src``, ``plugins/*/src`` and ``contrib/*/src`` flags:

- ``yaml.load`` / ``load_all`` without a safe loader (``SafeLoader``,
  ``CSafeLoader`` or a class of ours that subclasses ``SafeLoader``), and
  ``yaml.unsafe_load``, ``full_load``, ``FullLoader``, ``UnsafeLoader``;
- any ``pickle`` / ``cPickle`` / ``dill`` / ``cloudpickle`` / ``joblib`` /
  ``marshal`` / ``shelve`` load, and importing those loaders by name;
- ``torch.load`` without a literal ``weights_only=True`` (so no retry with
  it disabled either);
- ``np.load`` / ``numpy.load`` without a literal ``allow_pickle=False``.

The lint itself is tested: it flags each planted bad snippet and passes the
safe spellings.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SAFE_YAML_LOADERS = {"SafeLoader", "CSafeLoader", "BaseLoader"}
PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "marshal", "shelve"}
PICKLE_CALLS = {"load", "loads", "Unpickler", "open"}


def source_files() -> list[Path]:
    roots = [REPO / "core" / "src", *REPO.glob("plugins/*/src"), *REPO.glob("contrib/*/src")]
    return sorted(path for root in roots for path in root.rglob("*.py"))


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else ""
    return ""


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_constant(node: ast.expr | None, value: object) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def _safe_loader_classes(tree: ast.Module) -> set[str]:
    """Names of classes in this module that subclass a safe YAML loader (directly or through each other)."""
    safe = set(SAFE_YAML_LOADERS)
    changed = True
    while changed:
        changed = False
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.name not in safe:
                if any(_dotted(base).rpartition(".")[2] in safe for base in node.bases):
                    safe.add(node.name)
                    changed = True
    return safe


def lint(source: str, filename: str = "<snippet>") -> list[str]:
    """``file:line: problem`` for every unsafe load in ``source``."""
    tree = ast.parse(source, filename)
    safe_loaders = _safe_loader_classes(tree)
    problems = []

    def flag(node: ast.AST, message: str) -> None:
        problems.append(f"{filename}:{node.lineno}: {message}")

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            top = node.module.split(".")[0]
            for alias in node.names:
                if top in PICKLE_MODULES and alias.name in PICKLE_CALLS:
                    flag(node, f"from {node.module} import {alias.name}: unpickling runs code")
                if top == "yaml" and alias.name in ("load", "load_all", "unsafe_load", "full_load", "Loader",
                                                    "FullLoader", "UnsafeLoader"):
                    flag(node, f"from yaml import {alias.name}: import safe_load or SafeLoader instead")
        if isinstance(node, ast.Attribute) and _dotted(node) in ("yaml.FullLoader", "yaml.UnsafeLoader", "yaml.Loader"):
            flag(node, f"{_dotted(node)} constructs arbitrary Python objects")
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        module, _, function = name.rpartition(".")
        if module.split(".")[0] in PICKLE_MODULES and function in PICKLE_CALLS:
            flag(node, f"{name}(): unpickling runs code; use safetensors or JSON")
        elif module == "yaml" and function in ("unsafe_load", "full_load", "unsafe_load_all", "full_load_all"):
            flag(node, f"{name}(): constructs arbitrary Python objects; use yaml.safe_load")
        elif module == "yaml" and function in ("load", "load_all"):
            loader = _keyword(node, "Loader") or (node.args[1] if len(node.args) > 1 else None)
            if loader is None or _dotted(loader).rpartition(".")[2] not in safe_loaders:
                flag(node, f"{name}() without a SafeLoader")
        elif name in ("torch.load", "torch.serialization.load") and not _is_constant(_keyword(node, "weights_only"),
                                                                                      True):
            flag(node, f"{name}() without weights_only=True")
        elif name in ("np.load", "numpy.load") and not _is_constant(_keyword(node, "allow_pickle"), False):
            flag(node, f"{name}() without allow_pickle=False")
    return problems


def test_the_sources_load_nothing_unsafely():
    files = source_files()
    assert len(files) > 20 and any("vaeforge/checkpoint.py" in str(f) for f in files)
    problems = [p for path in files for p in lint(path.read_text(encoding="utf-8"), str(path.relative_to(REPO)))]
    assert problems == []


def test_our_yaml_loader_really_is_a_safe_loader():
    from vaeforge.config import _Loader

    assert issubclass(_Loader, yaml.SafeLoader)
    with pytest.raises(yaml.constructor.ConstructorError):
        yaml.load("!!python/object/apply:os.system ['true']", Loader=_Loader)  # noqa: S506


BAD = {
    "import pickle\npickle.load(f)": "unpickling runs code",
    "import pickle\npickle.loads(b)": "unpickling runs code",
    "import pickle\npickle.Unpickler(f).load()": "unpickling runs code",
    "from pickle import loads": "unpickling runs code",
    "import _pickle\n_pickle.loads(b)": "unpickling runs code",
    "import dill\ndill.load(f)": "unpickling runs code",
    "import joblib\njoblib.load(p)": "unpickling runs code",
    "import marshal\nmarshal.loads(b)": "unpickling runs code",
    "import shelve\nshelve.open(p)": "unpickling runs code",
    "import yaml\nyaml.load(text)": "without a SafeLoader",
    "import yaml\nyaml.load(text, Loader=yaml.Loader)": "without a SafeLoader",
    "import yaml\nyaml.load(text, yaml.FullLoader)": "without a SafeLoader",
    "import yaml\nclass L(yaml.Loader): pass\nyaml.load(text, Loader=L)": "without a SafeLoader",
    "import yaml\nyaml.unsafe_load(text)": "arbitrary Python objects",
    "import yaml\nyaml.full_load(text)": "arbitrary Python objects",
    "from yaml import load": "import safe_load",
    "import torch\ntorch.load(p)": "without weights_only=True",
    "import torch\ntorch.load(p, weights_only=False)": "without weights_only=True",
    "import torch\ntry:\n    torch.load(p, weights_only=True)\n"
    "except Exception:\n    torch.load(p, weights_only=False)": "without weights_only=True",
    "import torch\ntorch.load(p, weights_only=flag)": "without weights_only=True",
    "import numpy as np\nnp.load(p)": "without allow_pickle=False",
    "import numpy\nnumpy.load(p, allow_pickle=True)": "without allow_pickle=False",
}

GOOD = [
    "import yaml\nyaml.safe_load(text)",
    "import yaml\nyaml.load(text, Loader=yaml.SafeLoader)",
    "import yaml\nyaml.load(text, Loader=yaml.CSafeLoader)",
    "import yaml\nclass _Loader(yaml.SafeLoader): pass\nclass _Strict(_Loader): pass\nyaml.load(t, Loader=_Strict)",
    "import torch\ntorch.load(p, weights_only=True)",
    "import numpy as np\nnp.load(p, allow_pickle=False)",
    "import json\njson.loads(text)",
    "from safetensors.torch import load_file\nload_file(p)",
]


@pytest.mark.parametrize("snippet", list(BAD))
def test_the_lint_flags_a_planted_unsafe_load(snippet):
    problems = lint(snippet)
    assert problems and all(":" in p for p in problems)
    assert any(BAD[snippet] in p for p in problems), problems


@pytest.mark.parametrize("snippet", GOOD)
def test_the_lint_passes_safe_loads(snippet):
    assert lint(snippet) == []


def test_the_lint_names_the_file_and_line(tmp_path):
    assert lint("x = 1\nimport pickle\npickle.loads(b)\n", "pkg/mod.py") == [
        "pkg/mod.py:3: pickle.loads(): unpickling runs code; use safetensors or JSON"]
