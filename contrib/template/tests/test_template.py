"""Tests of the template plugin: registration, the loss term, its config, a short training run."""

from __future__ import annotations

from importlib import metadata

import pytest
import torch
import vaeforge_template.plugin
from vaeforge_template.l1_recon import L1Recon, L1ReconConfig

from vaeforge.api import Context, ModelOutput
from vaeforge.config import config_from_dict
from vaeforge.errors import ConfigError
from vaeforge.plugins import PluginInfo

RUN = {
    "name": "template-smoke",
    "data": {"name": "synthetic", "params": {"num_examples": 64, "dim": 4}, "batch_size": 16},
    "model": {"name": "mlp_vae", "params": {"latent_dim": 2, "hidden": [8]}},
    "losses": [{"name": "template_l1", "params": {"scale": 0.5}}, {"name": "kl"}],
    "trainer": {"epochs": 1},
    "loggers": [],
}


@pytest.fixture
def registry(vaeforge_pm, vaeforge_registry):
    """The built-ins plus this plugin, registered in-process (nothing is discovered)."""
    info = PluginInfo(name="template", module="vaeforge_template.plugin")
    assert vaeforge_pm.add_plugin(vaeforge_template.plugin, info)
    vaeforge_pm.check_pending()  # a misspelled hook name would fail here
    return vaeforge_registry()


def test_registers_the_loss_with_its_config(registry):
    component = registry.get("loss", "template_l1")
    assert (component.factory, component.config, component.plugin) == (L1Recon, L1ReconConfig, "template")


def test_builds_and_computes(registry):
    term = registry.build("loss", "template_l1", L1ReconConfig(scale=2.0))
    out = ModelOutput(recon=torch.tensor([[1.0, -2.0], [3.0, 4.0]]), posterior=None, z=torch.zeros(2, 1))
    value = term(out, {"x": torch.zeros(2, 2)}, Context())
    assert value.item() == pytest.approx(2.0 * (3.0 + 7.0) / 2)  # |1|+|-2| and |3|+|4|, batch mean, scaled


def test_params_are_checked_against_the_config_class(registry):
    config = config_from_dict(RUN, registry)
    assert config.losses[0].params == L1ReconConfig(scale=0.5)
    bad = {**RUN, "losses": [{"name": "template_l1", "params": {"scael": 1.0}}]}
    with pytest.raises(ConfigError, match=r"\$\.losses\[0\]\.params\.scael: unknown key; did you mean 'scale'\?"):
        config_from_dict(bad, registry)
    negative = {**RUN, "losses": [{"name": "template_l1", "params": {"scale": -1.0}}]}
    with pytest.raises(ConfigError, match=r"\$\.losses\[0\]\.params\.scale: must be >= 0\.0, got -1\.0"):
        config_from_dict(negative, registry)


def test_trains_a_few_steps(registry, tmp_path):
    from vaeforge.trainer.loop import Trainer

    trainer = Trainer(config_from_dict(RUN, registry), registry, tmp_path / "run", loggers=False)
    metrics = trainer.fit()
    assert torch.isfinite(torch.tensor(metrics["train/template_l1"]))


def test_entry_point_when_installed():
    try:
        distribution = metadata.distribution("vaeforge-template")
    except metadata.PackageNotFoundError:
        pytest.skip("vaeforge-template is not installed (pip install -e .)")
    (entry_point,) = [ep for ep in distribution.entry_points if ep.group == "vaeforge"]
    assert (entry_point.name, entry_point.value) == ("template", "vaeforge_template.plugin")
