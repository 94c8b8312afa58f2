"""The ``poincare_vae`` model and the plugin's registrations."""

from __future__ import annotations

import math

import pytest
import torch

import vaeforge_hyperbolic.plugin
from vaeforge.api import DataInfo, ModelOutput, VAEModel
from vaeforge.config import config_from_dict
from vaeforge.errors import ConfigError
from vaeforge.plugins import PluginInfo
from vaeforge_hyperbolic.latent import WrappedNormal
from vaeforge_hyperbolic.optimizers import RiemannianAdamConfig, RiemannianSGDConfig
from vaeforge_hyperbolic.poincare_vae import PoincareVAE, PoincareVAEConfig

DATA = {
    "categorical": (DataInfo(shape=(9,), kind="categorical", num_classes=3), lambda n: torch.randint(0, 3, (n, 9))),
    "binary": (DataInfo(shape=(1, 4, 4), kind="binary"), lambda n: torch.randint(0, 2, (n, 1, 4, 4)).float()),
    "continuous": (DataInfo(shape=(6,), kind="continuous"), lambda n: torch.randn(n, 6)),
}


@pytest.fixture
def registry(vaeforge_pm, vaeforge_registry):
    info = PluginInfo(name="hyperbolic", module="vaeforge_hyperbolic.plugin")
    assert vaeforge_pm.add_plugin(vaeforge_hyperbolic.plugin, info)
    vaeforge_pm.check_pending()
    return vaeforge_registry()


def test_plugin_registers_the_model_and_the_optimizers(registry):
    assert registry.get("model", "poincare_vae").config is PoincareVAEConfig
    assert registry.get("optimizer", "riemannian_adam").config is RiemannianAdamConfig
    assert registry.get("optimizer", "riemannian_sgd").config is RiemannianSGDConfig
    assert {c.plugin for c in registry.components() if c.name.startswith(("poincare", "riemannian"))} == {"hyperbolic"}


def test_loading_the_plugin_stays_cheap():
    """Importing the plugin imports neither torch nor geoopt; building the registry does not import geoopt."""
    import subprocess
    import sys

    code = (
        "import sys, vaeforge_hyperbolic.plugin\n"
        "assert 'torch' not in sys.modules and 'geoopt' not in sys.modules\n"
        "from vaeforge.plugins import PluginInfo, build_registry, make_plugin_manager\n"
        "pm = make_plugin_manager(autoload=False)\n"
        "assert pm.add_plugin(vaeforge_hyperbolic.plugin, PluginInfo(name='hyperbolic', module='x'))\n"
        "assert 'poincare_vae' in build_registry(pm).names('model')\n"
        "assert 'geoopt' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("kind", sorted(DATA))
def test_forward_follows_the_model_contract(kind):
    info, make = DATA[kind]
    model = PoincareVAE(PoincareVAEConfig(latent_dim=3, hidden=[32, 16], curvature=0.5), info)
    assert isinstance(model, VAEModel)
    x = make(8)
    out = model({"x": x})
    assert isinstance(out, ModelOutput)
    assert isinstance(out.posterior, WrappedNormal)
    expected = (8, *info.shape, 3) if kind == "categorical" else (8, *info.shape)
    assert out.recon.shape == expected and out.recon.dtype == torch.float32
    assert out.z.norm(dim=-1).max().item() < 1.0 / math.sqrt(0.5)
    assert out.posterior.kl().shape == (8,)
    samples = model.sample(5, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (5, *info.shape)
    if kind == "categorical":
        assert samples.dtype == torch.long and samples.min() >= 0 and samples.max() <= 2


def test_eval_mode_decodes_the_posterior_mean():
    info, make = DATA["categorical"]
    model = PoincareVAE(PoincareVAEConfig(latent_dim=2, hidden=[8]), info).eval()
    x = make(4)
    first, second = model({"x": x}), model({"x": x})
    assert torch.equal(first.recon, second.recon)
    assert torch.equal(first.z, first.posterior.mode())


@pytest.mark.parametrize("optimizer", ["riemannian_adam", "riemannian_sgd"])
def test_training_reduces_the_loss(registry, optimizer):
    info, make = DATA["categorical"]
    torch.manual_seed(0)
    model = registry.get("model", "poincare_vae").load()(PoincareVAEConfig(latent_dim=4, hidden=[64]), info)
    component = registry.get("optimizer", optimizer)
    config = component.config(lr=0.01) if optimizer == "riemannian_adam" else component.config(lr=0.2, momentum=0.5)
    opt = component.load()([p for p in model.parameters() if p.requires_grad], config)
    x = make(64)

    def loss() -> torch.Tensor:
        out = model({"x": x})
        recon = torch.nn.functional.cross_entropy(out.recon.reshape(-1, 3), x.reshape(-1), reduction="sum") / len(x)
        return recon + 0.1 * out.posterior.kl().mean()

    start = loss().item()
    for _ in range(30):
        opt.zero_grad()
        value = loss()
        value.backward()
        opt.step()
    assert value.item() < start - 1.0


def test_bad_settings_are_all_reported_at_their_paths(registry):
    document = {
        "name": "bad",
        "data": {"name": "synthetic"},
        "model": {"name": "poincare_vae", "params": {"curvature": -1.0, "latent_dim": 0, "curvture": 1.0}},
        "losses": [{"name": "kl"}],
        "optimizer": {"name": "riemannian_adam", "params": {"lr": 0.0, "betas": [0.9, 1.5]}},
    }
    with pytest.raises(ConfigError) as caught:
        config_from_dict(document, registry)
    text = "\n".join(caught.value.lines)
    for path in ("curvature", "latent_dim", "curvture"):
        assert f"$.model.params.{path}" in text
    assert "$.optimizer.params.lr" in text and "$.optimizer.params.betas" in text


def test_riemannian_sgd_settings_are_checked(registry):
    document = {
        "name": "bad",
        "data": {"name": "synthetic"},
        "model": {"name": "poincare_vae"},
        "losses": [{"name": "kl"}],
        "optimizer": {"name": "riemannian_sgd", "params": {"lr": -0.1, "nesterov": True}},
    }
    with pytest.raises(ConfigError, match=r"\$\.optimizer\.params"):
        config_from_dict(document, registry)


def test_preset_is_a_valid_config(registry):
    from vaeforge.config import load_config

    config = load_config("poincare-digits", registry)
    assert config.model.name == "poincare_vae" and isinstance(config.model.params, PoincareVAEConfig)
    assert config.optimizer.name == "riemannian_adam"
