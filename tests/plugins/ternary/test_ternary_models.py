"""``ternary_vae`` and ``ternary_dual_vae``: shapes, sampling, schedules, and the stop-gradient coupling."""

from __future__ import annotations

import attrs
import pytest
import torch

from vaeforge.api import DataInfo
from vaeforge.distributions import categorical_nll
from vaeforge_ternary.dual_loss import TernaryDualLoss, TernaryDualLossConfig
from vaeforge_ternary.models.ternary_dual_vae import (
    RhoPhasesConfig,
    TemperatureConfig,
    TernaryDualVAE,
    TernaryDualVAEConfig,
    rho_target,
    temperatures,
)
from vaeforge_ternary.models.ternary_vae import TernaryVAE, TernaryVAEConfig
from vaeforge_ternary.ops import all_operations


@pytest.fixture
def batch():
    torch.manual_seed(0)
    return {"x": all_operations()[torch.randperm(19_683)[:64]]}


def small_dual(info, **changes):
    config = TernaryDualVAEConfig(latent_dim=4, a_encoder_hidden=[16], a_decoder_hidden=[16],
                                  b_encoder_hidden=[16], b_decoder_hidden=[16, 16], **changes)
    return TernaryDualVAE(config, info)


def test_single_vae_shapes_and_samples(ternary_info, batch):
    model = TernaryVAE(TernaryVAEConfig(latent_dim=4, encoder_hidden=[16], decoder_hidden=[16]), ternary_info)
    out = model(batch)
    assert out.recon.shape == (64, 9, 3) and out.z.shape == (64, 4)
    samples = model.sample(1_000, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (1_000, 9) and samples.dtype == torch.long and 0 <= samples.min() <= samples.max() <= 2
    again = model.sample(1_000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(samples, again)


def test_models_refuse_other_data():
    info = DataInfo(shape=(1, 8, 8), kind="binary")
    with pytest.raises(ValueError, match="ternary_ops"):
        TernaryVAE(TernaryVAEConfig(), info)


def test_dual_vae_default_size_is_close_to_the_original(ternary_info):
    model = TernaryDualVAE(TernaryDualVAEConfig(), ternary_info)
    statenet = TernaryDualLoss(TernaryDualLossConfig()).statenet
    count = sum(p.numel() for p in model.parameters()) + sum(p.numel() for p in statenet.parameters())
    assert abs(count - 168_770) / 168_770 < 0.01


def test_cross_injection_passes_no_gradient_across(ternary_info, batch):
    model = small_dual(ternary_info).train()
    model.rho.fill_(0.5)
    model.config = attrs.evolve(model.config, rho=RhoPhasesConfig(isolation_epochs=0, consolidation_epochs=0,
                                                                   resonance_epochs=0, exploration_rho=0.5))
    out = model(batch)
    assert out.extras["rho"] == 0.5
    loss_a = categorical_nll(out.recon, batch["x"]).mean() + out.posterior.kl().mean()
    loss_b = categorical_nll(out.extras["recon_b"], batch["x"]).mean() + out.extras["posterior_b"].kl().mean()
    params_a, params_b = model.branch_parameters("a"), model.branch_parameters("b")
    grads_a_of_b = torch.autograd.grad(loss_a, params_b, retain_graph=True, allow_unused=True)
    grads_b_of_a = torch.autograd.grad(loss_b, params_a, retain_graph=True, allow_unused=True)
    assert all(g is None or not g.any() for g in grads_a_of_b)
    assert all(g is None or not g.any() for g in grads_b_of_a)
    assert all(g is not None and g.any() for g in torch.autograd.grad(loss_a, params_a, retain_graph=True)[:1])
    # the values do depend on the other branch: only the gradient is stopped
    before = out.recon.detach().clone()
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.encoder_b.parameters():
            p.add_(1.0)
    model.examples_seen.zero_()
    torch.manual_seed(0)
    assert not torch.allclose(model(batch).recon, before)


def test_eval_mode_decodes_each_branch_alone(ternary_info, batch):
    model = small_dual(ternary_info).eval()
    model.rho.fill_(0.5)
    out = model(batch)
    assert torch.equal(out.recon, model.decode(model.encode(batch["x"]).mode()))
    assert torch.equal(out.extras["recon_b"], model.decode_b(model.encode_b(batch["x"]).mode()))


@pytest.mark.parametrize(("branch", "which"), [("a", "decode"), ("b", "decode_b")])
def test_dual_samples_from_the_chosen_branch(ternary_info, branch, which):
    model = small_dual(ternary_info, sample_from=branch)
    drawn = model.sample(100, generator=torch.Generator().manual_seed(3))
    z = torch.randn(100, 4, generator=torch.Generator().manual_seed(3))
    assert torch.equal(drawn, getattr(model, which)(z).argmax(-1))


def test_dual_samples_half_from_each_branch(ternary_info):
    model = small_dual(ternary_info, sample_from="both")
    drawn = model.sample(101, generator=torch.Generator().manual_seed(3))
    z = torch.randn(101, 4, generator=torch.Generator().manual_seed(3))
    assert torch.equal(drawn[:51], model.decode(z[:51]).argmax(-1))
    assert torch.equal(drawn[51:], model.decode_b(z[51:]).argmax(-1))


def test_rho_phases():
    phases = RhoPhasesConfig(isolation_epochs=2, consolidation_epochs=6, resonance_epochs=14,
                             consolidation_rho=0.1, resonance_rho=0.3, exploration_rho=0.05)
    assert rho_target(phases, 1.0) == ("isolation", 0.0)
    assert rho_target(phases, 4.0) == ("consolidation", pytest.approx(0.05))
    assert rho_target(phases, 10.0) == ("resonance", pytest.approx(0.2))
    assert rho_target(phases, 20.0) == ("exploration", 0.05)
    with pytest.raises(ValueError, match="ordered"):
        RhoPhasesConfig(isolation_epochs=5, consolidation_epochs=3)


def test_temperatures_cycle_for_a_and_fall_for_b():
    config = TemperatureConfig(a_base=1.1, a_amplitude=0.1, a_period=4, a_exploration_boost=0.2,
                               b_start=1.0, b_end=0.8, b_epochs=10)
    assert temperatures(config, 0.0, False) == pytest.approx((1.2, 1.0))
    assert temperatures(config, 2.0, False) == pytest.approx((1.0, 0.96))
    assert temperatures(config, 4.0, True) == pytest.approx((1.4, 0.92))
    assert temperatures(config, 50.0, False)[1] == pytest.approx(0.8)


def test_resonance_gate_holds_rho_while_gradients_are_unbalanced(ternary_info, batch):
    phases = RhoPhasesConfig(isolation_epochs=0, consolidation_epochs=0, resonance_epochs=100,
                             consolidation_rho=0.1, resonance_rho=0.3, gate_ratio=2.0)
    model = small_dual(ternary_info, rho=phases).train()
    model.rho.fill_(0.1)
    model.examples_seen.fill_(50 * 19_683)
    model.grad_norms.copy_(torch.tensor([5.0, 1.0]))  # ratio 5: gate closed
    assert model(batch).extras["rho"] == pytest.approx(0.1)
    model.grad_norms.copy_(torch.tensor([1.5, 1.0]))  # ratio 1.5: gate open
    assert model(batch).extras["rho"] == pytest.approx(0.2, abs=1e-3)


def test_gradient_norms_are_averaged_from_the_last_step(ternary_info, batch):
    model = small_dual(ternary_info, grad_ema_decay=0.5).train()
    out = model(batch)
    assert not out.extras["grad_norms"].any()
    (out.recon.sum() + 2 * out.extras["recon_b"].sum()).backward()
    norm_a = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.branch_parameters("a")]))
    norm_b = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.branch_parameters("b")]))
    model(batch)
    torch.testing.assert_close(model.grad_norms, torch.stack([norm_a, norm_b]))
    model(batch)  # no backward since: the average stays
    torch.testing.assert_close(model.grad_norms, torch.stack([norm_a, norm_b]))
    model.zero_grad()
    model(batch).recon.sum().mul(float("nan")).backward()
    model(batch)  # a non-finite backward is not folded in
    torch.testing.assert_close(model.grad_norms, torch.stack([norm_a, norm_b]))


def test_the_clock_counts_examples_and_survives_a_reload(ternary_info, batch):
    model = small_dual(ternary_info).train()
    for _ in range(3):
        model(batch)
    assert model.examples_seen == 192
    copy = small_dual(ternary_info)
    copy.load_state_dict(model.state_dict())
    assert copy(batch).extras["epoch"] == pytest.approx(192 / 19_683)


def test_a_reloaded_model_continues_exactly(ternary_info, batch):
    """The gradient statistics of the last backward are state: a checkpoint taken after a step resumes exactly."""
    torch.manual_seed(0)
    model = small_dual(ternary_info).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def step(m, opt):
        out = m(batch)
        opt.zero_grad()
        (out.recon.sum() + out.extras["recon_b"].sum()).backward()
        opt.step()
        return out

    for _ in range(3):
        step(model, optimizer)
    copy = small_dual(ternary_info).train()
    copy.load_state_dict(model.state_dict())
    copy_optimizer = torch.optim.SGD(copy.parameters(), lr=0.1)
    torch.manual_seed(5)
    expected = step(model, optimizer)
    torch.manual_seed(5)
    resumed = step(copy, copy_optimizer)
    torch.testing.assert_close(resumed.recon, expected.recon, rtol=0, atol=0)
    torch.testing.assert_close(copy.grad_norms, model.grad_norms, rtol=0, atol=0)
