"""The ternary-hyperbolic preset: it loads, trains through the real command line, and says what
to install when vaeforge-hyperbolic is missing."""

from __future__ import annotations

import os
from importlib import metadata

import pytest

import vaeforge_hyperbolic.plugin
from vaeforge.cli import main
from vaeforge.config import load_config
from vaeforge.plugins import PluginInfo

PRESET = "ternary-hyperbolic"
HINT = "pip install 'vaeforge-ternary[hyperbolic]'"


@pytest.fixture
def both_registry(vaeforge_pm, ternary_registry, vaeforge_registry):
    """The built-ins, vaeforge-ternary and vaeforge-hyperbolic, registered in-process."""
    info = PluginInfo(name="hyperbolic", module="vaeforge_hyperbolic.plugin")
    assert vaeforge_pm.add_plugin(vaeforge_hyperbolic.plugin, info)
    return vaeforge_registry()


@pytest.fixture
def cli(capsys, monkeypatch, tmp_path):
    """``vaeforge <args>`` in this process, from an empty folder, with only the given VAEFORGE_ variables."""
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("VAEFORGE_")]:
        monkeypatch.delenv(name)

    def run(*args, **variables):
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_preset_is_registered_by_the_ternary_plugin(both_registry):
    assert both_registry.get("preset", PRESET).plugin == "ternary"


def test_preset_loads_with_the_researched_settings(both_registry):
    config = load_config(PRESET, both_registry)
    assert config.name == PRESET and config.seed == 0
    assert config.data.name == "ternary_ops" and config.data.batch_size == 256
    assert config.model.name == "poincare_vae"
    params = config.model.params
    assert (params.latent_dim, params.curvature, list(params.hidden), params.activation) == (16, 1.0, [256, 256],
                                                                                              "silu")
    recon, kl = config.losses
    assert recon.name == "categorical_recon"
    assert kl.name == "kl" and kl.weight.name == "linear"
    assert (kl.weight.params.start, kl.weight.params.end, kl.weight.params.epochs) == (0.0, 0.9, 10)
    assert config.optimizer.name == "riemannian_adam" and config.optimizer.params.lr == 2.0e-3
    assert config.scheduler.name == "warmup_cosine"
    assert (config.scheduler.params.total_steps, config.scheduler.params.min_factor) == (1540, 0.05)
    assert (config.trainer.epochs, config.trainer.log_every_n_steps) == (20, 77)
    assert [m.name for m in config.metrics] == ["ternary_coverage"]
    assert list(config.metrics[0].params.samples) == [100_000, 1_000_000]
    assert [logger.name for logger in config.loggers] == ["console", "jsonl", "plots"]


def test_validate_through_the_command_line(cli):
    code, out, err = cli("validate", PRESET)
    assert code == 0, err
    assert f"ok: {PRESET} is a valid config" in out


def test_disabled_hyperbolic_plugin_is_one_line_naming_the_extra(cli, tmp_path):
    code, out, err = cli("train", PRESET, VAEFORGE_DISABLE_PLUGINS="hyperbolic")
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: preset '{PRESET}' needs model 'poincare_vae' and optimizer 'riemannian_adam'")
    assert HINT in lines[0]
    assert "its plugin 'hyperbolic' is not loaded" in lines[0] and "VAEFORGE_DISABLE_PLUGINS" in lines[0]
    assert not any(tmp_path.iterdir())  # no run folder


def test_uninstalled_hyperbolic_distribution_is_named(cli, monkeypatch):
    real = metadata.distribution

    def without_hyperbolic(name):
        if name.replace("_", "-").lower() == "vaeforge-hyperbolic":
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(metadata, "distribution", without_hyperbolic)
    code, _, err = cli("validate", PRESET, VAEFORGE_DISABLE_PLUGINS="hyperbolic")
    assert code == 2
    assert err.splitlines() == [
        f"error: preset '{PRESET}' needs model 'poincare_vae' and optimizer 'riemannian_adam', which no loaded "
        f"plugin provides; the preset's package vaeforge-ternary has an optional dependency that is missing: "
        f"{HINT} (vaeforge-hyperbolic is not installed)"]


def test_overrides_that_replace_the_missing_components_are_not_blocked(cli):
    overrides = ["model.name=ternary_vae", "model.params={latent_dim: 16}", "optimizer.name=adam"]
    code, out, err = cli("validate", PRESET, *overrides, VAEFORGE_DISABLE_PLUGINS="hyperbolic")
    assert code == 0, err
    code, _, err = cli("validate", PRESET, "optimizer.name=adam", VAEFORGE_DISABLE_PLUGINS="hyperbolic")
    assert code == 2
    assert "needs model 'poincare_vae', which no loaded plugin provides" in err and HINT in err
    assert "riemannian_adam" not in err


def test_a_copied_preset_file_gets_the_usual_errors(both_registry, tmp_path, cli):
    copy = tmp_path / "mine.yaml"
    copy.write_text(both_registry.get("preset", PRESET).load().read_text())
    code, _, err = cli("validate", str(copy), VAEFORGE_DISABLE_PLUGINS="hyperbolic")
    assert code == 2
    assert "unknown model 'poincare_vae'" in err and "unknown optimizer 'riemannian_adam'" in err
    assert HINT not in err
