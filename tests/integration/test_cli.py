"""The ``vaeforge`` program: what it imports, and what ``components``, ``presets`` and ``--version`` print."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.core.clirun import cli_env, run_cli

pytestmark = pytest.mark.integration

FAKE = Path(__file__).parents[1] / "core" / "fake_dists"
HEAVY = ("mlflow", "tensorboard", "torch.utils.tensorboard", "lpips", "geoopt", "vaeforge_fakeplugin_heavy")


def python(script: str, *, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=300)


def test_help_imports_no_torch(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from vaeforge.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as exc:\n    assert exc.code == 0, exc.code\n"
        "heavy = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
        "assert not heavy, heavy\n"
        "print('no torch')\n"
    )
    result = python(script, env=cli_env([FAKE]), cwd=tmp_path)  # plugins load for --help: the fake one too
    assert result.returncode == 0, result.stderr
    assert "usage: vaeforge" in result.stdout and "fake-hello" in result.stdout
    assert result.stdout.endswith("no torch\n")


def test_plugins_imports_no_heavy_dependency_of_any_plugin(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from vaeforge.cli import main\n"
        "assert main(['plugins']) == 0\n"
        f"heavy = sorted(m for m in {HEAVY!r} if m in sys.modules)\n"
        "assert not heavy, heavy\n"
        "assert 'vaeforge_fakeplugin' in sys.modules\n"
        "print('nothing heavy')\n"
    )
    result = python(script, env=cli_env([FAKE]), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "fakeplugin (vaeforge-fakeplugin 1.2.3)" in result.stdout
    assert result.stdout.endswith("nothing heavy\n")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(FAKE))
    monkeypatch.setenv("VAEFORGE_PLUGINS", "fakeplugin")
    yield
    for module in ("vaeforge_fakeplugin", "vaeforge_fakeplugin_heavy"):
        sys.modules.pop(module, None)


def test_components_shows_name_plugin_fields_types_defaults_and_docs(fake: None,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "components", "loss")
    assert result.code == 0
    lines = result.out.splitlines()
    assert all(line.startswith(("loss ", "    ")) for line in lines)
    kl = lines.index("loss kl  [plugin vaeforge]  "
                     "KL(q(z|x) || p(z)) per example, averaged over the batch; weight it with a schedule for beta.")
    assert lines[kl + 1] == ("    free_bits: float, default 0.0. "
                             "nats per example below which the KL is not penalised (0 disables).")
    fake_l1 = lines.index("loss fake_l1  [plugin fakeplugin]  Mean absolute reconstruction error, scaled.")
    assert lines[fake_l1 + 1] == "    scale: float, default 1.0. multiplier on the mean absolute error."
    assert "loss bce_recon  [plugin vaeforge]  Bernoulli reconstruction: binary cross-entropy of the decoder logits " \
           "against ``x`` in [0, 1]." in lines


def test_components_marks_required_fields_and_lists_every_kind(capsys: pytest.CaptureFixture[str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAEFORGE_DISABLE_PLUGIN_AUTOLOAD", "1")
    result = run_cli(capsys, "components")
    assert result.code == 0
    kinds = {line.split()[0] for line in result.out.splitlines() if not line.startswith(" ")}
    assert kinds == {"model", "loss", "callback", "data_source", "logger", "optimizer", "scheduler", "schedule"}
    assert "    path: str, required. a ``.npy`` file (loaded with ``allow_pickle=False``) or a ``.safetensors`` file." \
        in result.out.splitlines()
    assert "    every_n_steps: int | None, default null. also save every N optimizer steps." in result.out.splitlines()


def test_components_of_an_unknown_kind(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "components", "losses")
    assert result.code == 2
    assert result.errors == ["unknown component kind 'losses'; did you mean 'loss'? (kinds: model, loss, callback, "
                             "data_source, logger, optimizer, scheduler, schedule, metric, preset)"]


def test_presets_lists_name_plugin_and_summary(fake: None, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "presets")
    assert result.code == 0
    assert result.out.splitlines() == [
        "digits  [plugin vaeforge]  Binarized 8x8 scikit-learn digits with a small MLP VAE; trains in well under a "
        "minute on CPU.",
        "fake-tiny  [plugin fakeplugin]",
    ]


def test_version_and_no_command(capsys: pytest.CaptureFixture[str]) -> None:
    from vaeforge import __version__

    result = run_cli(capsys, "--version")
    assert (result.code, result.out) == (0, f"vaeforge {__version__}\n")
    result = run_cli(capsys)
    assert result.code == 2 and result.out.startswith("usage: vaeforge")


def test_unknown_option_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "validate", "digits", "--bogus")
    assert result.code == 2
    assert "unrecognized arguments: --bogus" in result.err
