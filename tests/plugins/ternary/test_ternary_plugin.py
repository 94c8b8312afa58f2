"""Registration, cheap import, presets and config errors of vaeforge-ternary."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vaeforge.config import load_config
from vaeforge.errors import ConfigError
from vaeforge_ternary.callbacks import CoveragePlateauConfig
from vaeforge_ternary.data import TernaryOpsConfig
from vaeforge_ternary.dual_loss import TernaryDualLossConfig
from vaeforge_ternary.metrics import CoverageConfig
from vaeforge_ternary.models.ternary_dual_vae import TernaryDualVAEConfig
from vaeforge_ternary.models.ternary_vae import TernaryVAEConfig
from vaeforge_ternary.padic_ranking import PadicRankingConfig

COMPONENTS = [
    ("data_source", "ternary_ops", TernaryOpsConfig),
    ("model", "ternary_vae", TernaryVAEConfig),
    ("model", "ternary_dual_vae", TernaryDualVAEConfig),
    ("loss", "ternary_dual", TernaryDualLossConfig),
    ("loss", "padic_ranking", PadicRankingConfig),
    ("metric", "ternary_coverage", CoverageConfig),
    ("callback", "coverage_plateau", CoveragePlateauConfig),
]


@pytest.mark.parametrize(("kind", "name", "config"), COMPONENTS)
def test_registers_component_with_its_config(ternary_registry, kind, name, config):
    component = ternary_registry.get(kind, name)
    assert component.plugin == "ternary"
    assert component.config is config


def test_registers_presets(ternary_registry):
    assert {"ternary", "ternary-dual"} <= set(ternary_registry.names("preset"))


def test_importing_the_plugin_does_not_import_torch():
    code = "import sys, vaeforge_ternary.plugin; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


@pytest.mark.parametrize("preset", ["ternary", "ternary-dual"])
def test_presets_load(ternary_registry, preset):
    config = load_config(preset, ternary_registry)
    assert config.data.name == "ternary_ops"
    assert [m.name for m in config.metrics] == ["ternary_coverage"]


def test_bad_params_are_reported_with_paths(ternary_registry):
    overrides = ["model.params.latent_dims=8", "model.params.activation=swish", "metrics[0].params.samples=[0]"]
    with pytest.raises(ConfigError) as info:
        load_config("ternary", ternary_registry, overrides)
    text = "\n".join(info.value.lines)
    assert "$.model.params.latent_dims" in text and "latent_dim" in text
    assert "$.model.params.activation" in text
    assert "$.metrics[0].params.samples" in text


@pytest.mark.parametrize(
    ("config", "kwargs"),
    [
        (TernaryVAEConfig, {"latent_dim": 0}),
        (TernaryVAEConfig, {"activation": "swish"}),
        (TernaryDualVAEConfig, {"sample_from": "c"}),
        (TernaryDualLossConfig, {"balance_min": 1.5}),
        (TernaryDualLossConfig, {"beta": -0.1}),
        (TernaryOpsConfig, {"val_fraction": 1.0}),
        (CoverageConfig, {"samples": []}),
        (CoveragePlateauConfig, {"threshold": 1.5}),
        (PadicRankingConfig, {"margin": 0.0}),
    ],
)
def test_config_classes_reject_bad_values(config, kwargs):
    with pytest.raises(ValueError):
        config(**kwargs)
