"""The ``ternary_dual`` objective with its StateNet, and the 3-adic ranking loss."""

from __future__ import annotations

import math

import pytest
import torch

from vaeforge.api import Context
from vaeforge.checkpoint import flatten_state, unflatten_state
from vaeforge_ternary.dual_loss import TernaryDualLoss, TernaryDualLossConfig, repulsion
from vaeforge_ternary.models.statenet import StateNetConfig
from vaeforge_ternary.models.ternary_dual_vae import TernaryDualVAE, TernaryDualVAEConfig
from vaeforge_ternary.ops import all_operations
from vaeforge_ternary.padic_ranking import PadicRanking, PadicRankingConfig, valuation3


@pytest.fixture
def setup(ternary_info):
    torch.manual_seed(0)
    config = TernaryDualVAEConfig(latent_dim=4, a_encoder_hidden=[16], a_decoder_hidden=[16],
                                  b_encoder_hidden=[16], b_decoder_hidden=[16, 16])
    model = TernaryDualVAE(config, ternary_info).train()
    batch = {"x": all_operations()[torch.randperm(19_683)[:64]]}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    return model, batch, Context(step=0, steps_per_epoch=77, optimizer=optimizer)


def step(model, loss, batch, ctx):
    """One training step as the trainer takes it; returns the terms."""
    out = model(batch)
    terms = loss(out, batch, ctx)
    ctx.optimizer.zero_grad()
    torch.stack(list(terms.values())).sum().backward()
    ctx.optimizer.step()
    loss.auxiliary_step(out, batch, ctx)
    ctx.step += 1
    return terms


def test_terms_follow_the_switches(setup):
    model, batch, ctx = setup
    everything = TernaryDualLoss(TernaryDualLossConfig(output_entropy=0.1, repulsion=0.1))
    assert set(everything(model(batch), batch, ctx)) == {"a", "b", "align", "entropy_b", "repulsion_b"}
    plain = TernaryDualLoss(TernaryDualLossConfig(lambda3=0.0, statenet=None))
    assert set(plain(model(batch), batch, ctx)) == {"a", "b"}


def test_betas_ramp_with_a_phase_lag():
    loss = TernaryDualLoss(TernaryDualLossConfig(beta=0.8, beta_start=0.0, beta_warmup_epochs=4, beta_b_lag_epochs=1))
    assert loss.betas(0.0) == (0.0, 0.0)
    assert loss.betas(2.0) == pytest.approx((0.4, 0.2))
    assert loss.betas(10.0) == (0.8, 0.8)


def test_gradient_balance_scales_are_clipped():
    loss = TernaryDualLoss(TernaryDualLossConfig(balance_min=0.5, balance_max=2.0))
    torch.testing.assert_close(loss.balance(torch.tensor([1.0, 2.25])), torch.tensor([1.5, 1 / 1.5]))
    torch.testing.assert_close(loss.balance(torch.tensor([1.0, 99.0])), torch.tensor([2.0, 0.5]))
    torch.testing.assert_close(loss.balance(torch.tensor([0.0, 0.0])), torch.ones(2))
    off = TernaryDualLoss(TernaryDualLossConfig(grad_balance=False))
    torch.testing.assert_close(off.balance(torch.tensor([1.0, 3.0])), torch.ones(2))


def test_without_statenet_the_objective_is_the_weighted_sum(setup):
    model, batch, ctx = setup
    loss = TernaryDualLoss(TernaryDualLossConfig(lambda1=2.0, lambda2=3.0, lambda3=0.5, statenet=None,
                                                 grad_balance=False, beta_warmup_epochs=0, beta=0.5))
    out = model(batch)
    terms = loss(out, batch, ctx)
    from vaeforge.distributions import categorical_nll

    expected_a = 2.0 * (categorical_nll(out.recon, batch["x"]).mean() + 0.5 * out.posterior.kl().mean())
    torch.testing.assert_close(terms["a"], expected_a)
    h_a = 0.5 * (1 + math.log(2 * math.pi) + out.posterior.logvar).sum(-1).mean()
    h_b = 0.5 * (1 + math.log(2 * math.pi) + out.extras["posterior_b"].logvar).sum(-1).mean()
    torch.testing.assert_close(terms["align"], 0.5 * (h_a - h_b).abs())
    assert loss.auxiliary_step(out, batch, ctx) == {}


def test_statenet_learns_keeps_the_lambda_sum_and_corrects_the_learning_rate(setup):
    model, batch, ctx = setup
    loss = TernaryDualLoss(TernaryDualLossConfig(statenet=StateNetConfig(lr=0.05)))
    base = 1.0 + 1.0 + 0.1
    for _ in range(5):
        step(model, loss, batch, ctx)
    out = model(batch)
    loss(out, batch, ctx)
    lambdas = loss._previous_lambdas
    assert lambdas.sum().item() == pytest.approx(base)
    assert not torch.allclose(lambdas, torch.tensor([1.0, 1.0, 0.1]))  # it moved from the identity
    logged = loss.auxiliary_step(out, batch, ctx)
    scale = logged["lr_scale"].item()
    assert 0.9 <= scale <= 1.1
    assert ctx.optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * scale)
    assert logged["lr_scheduled"].item() == pytest.approx(0.1)


def test_statenet_state_round_trips_through_a_checkpoint(setup):
    model, batch, ctx = setup
    loss = TernaryDualLoss(TernaryDualLossConfig())
    for _ in range(3):
        step(model, loss, batch, ctx)
    skeleton, tensors = flatten_state(loss.state_dict())
    restored = TernaryDualLoss(TernaryDualLossConfig())
    restored.load_state_dict(unflatten_state(skeleton, tensors))
    out = model(batch)
    for key, value in loss(out, batch, ctx).items():
        torch.testing.assert_close(restored(out, batch, ctx)[key], value)


def test_repulsion_is_lower_for_spread_out_points():
    close = torch.zeros(8, 4) + 0.01 * torch.randn(8, 4)
    spread = 5.0 * torch.randn(8, 4)
    assert repulsion(spread, 1.0) < repulsion(close, 1.0) <= 1.0


def test_valuation3():
    diffs = torch.tensor([1, 3, -9, 2 * 27, 0, 3**8, 5])
    assert valuation3(diffs).tolist() == [0, 1, 2, 3, 9, 8, 0]


def test_padic_ranking_is_zero_when_latents_follow_3adic_order_and_positive_otherwise(ternary_info):
    ops = all_operations()[:81]  # indices 0..80: the 3-adic structure is visible in the low digits
    index = torch.arange(81)

    class Out:
        def __init__(self, mean):
            self.posterior = type("P", (), {"mean": mean})()
            self.extras = {}

    # embed by the digits weighted so that sharing low digits means being close
    digits = ((index.unsqueeze(1) // 3 ** torch.arange(4)) % 3).float()
    good = digits * torch.tensor([1000.0, 100.0, 10.0, 1.0])
    loss = PadicRanking(PadicRankingConfig(triplets=2_000, margin=0.1))
    torch.manual_seed(0)
    assert loss(Out(good), {"x": ops}, Context()).item() == 0.0
    bad = digits * torch.tensor([1.0, 10.0, 100.0, 1000.0])  # sharing high digits means being close
    assert loss(Out(bad), {"x": ops}, Context()).item() > 1.0


@pytest.mark.parametrize(("cosine", "direction"), [(-1.0, 1), (1.0, -1)])
def test_the_learning_rate_follows_the_hypergradient(setup, cosine, direction):
    """Steps that undershoot (gradient still along the last update) raise the rate; overshooting lowers it."""
    model, batch, ctx = setup
    loss = TernaryDualLoss(TernaryDualLossConfig(statenet=StateNetConfig(lr=0.05)))
    loss._hypergradient = lambda optimizer: torch.tensor(cosine)
    for _ in range(5):
        out = model(batch)
        loss(out, batch, ctx)
        scale = loss.auxiliary_step(out, batch, ctx)["lr_scale"].item()
    assert (scale - 1.0) * direction > 0.01


def test_hypergradient_cosine_is_minus_one_when_the_gradient_keeps_its_direction(setup):
    model, batch, ctx = setup
    loss = TernaryDualLoss(TernaryDualLossConfig())
    parameters = [p for group in ctx.optimizer.param_groups for p in group["params"]]
    for p in parameters:
        p.grad = torch.ones_like(p)
    loss._hypergradient(ctx.optimizer)
    ctx.optimizer.step()  # SGD: the update is -lr * grad
    loss._hypergradient(ctx.optimizer)
    assert loss._hypergradient(ctx.optimizer).item() == pytest.approx(-1.0)
