"""The wrapped normal on the Poincaré ball: density, sampling, Monte Carlo KL, the latent head."""

from __future__ import annotations

import math

import pytest
import torch

from vaeforge_hyperbolic.latent import (
    GEOMETRY_DTYPE,
    PoincareLatent,
    WrappedNormal,
    exp0,
    log0,
    log_sinhc,
    standard_log_prob,
)

CURVATURES = [0.5, 1.0, 2.0]


def test_log_sinhc_is_accurate_and_smooth_at_zero():
    x = torch.tensor([0.0, 1e-4, 0.05, 0.0999, 0.1, 0.1001, 1.0, 10.0, 300.0], dtype=torch.float64,
                     requires_grad=True)
    reference = torch.log(torch.sinh(x[1:-1].detach()) / x[1:-1].detach())
    value = log_sinhc(x)
    torch.testing.assert_close(value[1:-1], reference, rtol=1e-9, atol=1e-12)
    assert value[0] == 0.0
    assert value[-1].item() == pytest.approx(300.0 - math.log(600.0))
    value.sum().backward()
    assert torch.isfinite(x.grad).all()


def _disc_grid(curvature: float, n: int = 401) -> tuple[torch.Tensor, torch.Tensor]:
    """Points of a square grid inside the 2-D ball and each cell's Riemannian area."""
    radius = 1.0 / math.sqrt(curvature)
    ticks = torch.linspace(-radius, radius, n, dtype=torch.float64)
    x, y = torch.meshgrid(ticks, ticks, indexing="ij")
    points = torch.stack([x, y], dim=-1).reshape(-1, 2)
    points = points[points.norm(dim=-1) < radius * (1 - 1e-9)]
    conformal = 2.0 / (1.0 - curvature * points.pow(2).sum(dim=-1))
    return points, conformal.pow(2) * (ticks[1] - ticks[0]) ** 2


@pytest.mark.parametrize("curvature", CURVATURES)
def test_density_integrates_to_one_over_the_ball(curvature):
    points, area = _disc_grid(curvature)
    mean = exp0(torch.tensor([[0.4, -0.2]], dtype=torch.float64), curvature).expand(len(points), 2)
    posterior = WrappedNormal(mean, torch.tensor([[0.5, 0.8]]), curvature)
    assert (posterior.log_prob(points).exp() * area).sum().item() == pytest.approx(1.0, abs=1e-4)
    assert (standard_log_prob(points, curvature).exp() * area).sum().item() == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("curvature", CURVATURES)
def test_log_inverts_exp_and_measures_geodesic_distance(curvature):
    generator = torch.Generator().manual_seed(0)
    mean = exp0(torch.randn(32, 5, generator=generator, dtype=torch.float64), curvature)
    posterior = WrappedNormal(mean, torch.full((32, 5), 0.7), curvature)
    z = posterior.sample(generator=generator)
    v = posterior.log(z)
    torch.testing.assert_close(posterior.exp(v), z)
    geoopt = pytest.importorskip("geoopt")
    ball = geoopt.PoincareBall(c=curvature).double()  # its curvature passes through float32
    torch.testing.assert_close(v.norm(dim=-1), ball.dist(mean, z), rtol=1e-4, atol=0.0)


@pytest.mark.parametrize("curvature", CURVATURES)
def test_prior_samples_are_standard_normal_in_the_tangent_space(curvature):
    z = WrappedNormal.standard((50_000, 4), curvature).sample(generator=torch.Generator().manual_seed(1))
    v = log0(z, curvature)
    assert v.mean(dim=0).abs().max().item() < 0.02
    assert (v.std(dim=0) - 1.0).abs().max().item() < 0.02


@pytest.mark.parametrize("curvature", CURVATURES)
def test_samples_stay_strictly_inside_the_ball(curvature):
    generator = torch.Generator().manual_seed(2)
    far = exp0(torch.randn(4096, 16, generator=generator, dtype=torch.float64) * 20.0, curvature)
    posterior = WrappedNormal(far, torch.full((4096, 16), 5.0), curvature)
    for z in (posterior.sample(generator=generator), posterior.sample(3.0, generator=generator)):
        assert z.dtype == GEOMETRY_DTYPE
        assert torch.isfinite(z).all()
        assert z.norm(dim=-1).max().item() < 1.0 / math.sqrt(curvature)


def test_kl_is_zero_when_the_posterior_is_the_prior():
    for curvature in CURVATURES:
        prior = WrappedNormal.standard((1000, 8), curvature)
        assert prior.kl().abs().max().item() < 1e-8
    generator = torch.Generator().manual_seed(3)
    mean = exp0(torch.randn(100, 8, generator=generator), 1.0)
    posterior = WrappedNormal(mean, torch.rand(100, 8, generator=generator) + 0.1)
    posterior.sample(generator=generator)
    assert posterior.kl(prior=posterior).abs().max().item() < 1e-8


@pytest.mark.parametrize("curvature", CURVATURES)
def test_kl_estimate_is_positive_when_the_posterior_differs(curvature):
    mean = exp0(torch.full((5000, 4), 0.5, dtype=torch.float64), curvature)
    posterior = WrappedNormal(mean, torch.full((5000, 4), 0.4), curvature)
    posterior.sample(generator=torch.Generator().manual_seed(4))
    kl = posterior.kl()
    assert kl.shape == (5000,)
    assert kl.mean().item() > 10 * kl.std().item() / math.sqrt(len(kl))


def test_kl_matches_the_gaussian_kl_in_the_flat_limit():
    """As c -> 0 the ball is flat and the wrapped normals are Gaussians in the tangent frame."""
    curvature, n = 1e-6, 100_000
    tangent_mean = torch.tensor([0.8, -0.3, 0.1], dtype=torch.float64)
    scale = torch.tensor([0.5, 1.5, 0.9], dtype=torch.float64)
    posterior = WrappedNormal(exp0(tangent_mean.expand(n, 3), curvature), scale.expand(n, 3), curvature)
    posterior.sample(generator=torch.Generator().manual_seed(5))
    exact = 0.5 * (scale.pow(2) + tangent_mean.pow(2) - 1.0 - scale.pow(2).log()).sum().item()
    assert posterior.kl().mean().item() == pytest.approx(exact, rel=0.02)


def test_kl_reuses_the_last_sample_and_is_differentiable():
    head = PoincareLatent(in_features=6, latent_dim=3)
    posterior = head(torch.randn(10, 6))
    z = posterior.sample()
    kl = posterior.kl()
    assert posterior.kl().equal(kl)  # same draw, same estimate
    (kl.sum() + head.to_decoder(z).pow(2).sum()).backward()
    for parameter in head.parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all()


def test_a_tempered_sample_is_not_used_for_the_kl():
    posterior = WrappedNormal.standard((5, 3))
    z = posterior.sample()
    posterior.sample(temperature=0.5)
    assert posterior._last[1].equal(z)


def test_head_maps_features_to_the_ball_and_back():
    head = PoincareLatent(in_features=8, latent_dim=4, curvature=2.0, min_scale=0.01)
    posterior = head(torch.randn(7, 8))
    assert posterior.mode().shape == (7, 4)
    assert posterior.scale.min().item() >= 0.01
    assert head.to_decoder(posterior.sample()).dtype == torch.float32
    prior_points = head.sample_prior(5, generator=torch.Generator().manual_seed(0))
    assert prior_points.shape == (5, 4)
    assert prior_points.norm(dim=-1).max().item() < 1.0 / math.sqrt(2.0)


@pytest.mark.parametrize("curvature", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_curvature_is_rejected(curvature):
    with pytest.raises(ValueError, match="curvature"):
        PoincareLatent(in_features=4, latent_dim=2, curvature=curvature)
    with pytest.raises(ValueError, match="curvature"):
        WrappedNormal.standard((1, 2), curvature)


@pytest.mark.parametrize("curvature", CURVATURES)
def test_kl_prior_term_uses_the_exact_distance_from_the_origin(curvature):
    generator = torch.Generator().manual_seed(6)
    mean = exp0(torch.randn(2000, 6, generator=generator, dtype=torch.float64) * 1.5, curvature)
    posterior = WrappedNormal(mean, torch.rand(2000, 6, generator=generator) + 0.05, curvature)
    z = posterior.sample(generator=generator)
    v = posterior._last[0]
    torch.testing.assert_close(posterior._distance_from_origin(v), log0(z, curvature).norm(dim=-1))
    torch.testing.assert_close(posterior.kl(), posterior.log_prob(z) - standard_log_prob(z, curvature))


def test_kl_keeps_growing_for_posteriors_that_reach_past_the_representable_ball():
    """Samples beyond distance 16.8 / sqrt(c) are pulled back, but the KL must not reward them."""
    n, dim = 20_000, 16
    estimates = []
    for scale in (1.0, 3.0, 10.0, 30.0):
        posterior = WrappedNormal(torch.zeros(n, dim), torch.full((n, dim), scale))
        posterior.sample(generator=torch.Generator().manual_seed(7))
        estimates.append(posterior.kl().mean().item())
        # at the origin the log-volume terms cancel: the KL is the Gaussian one
        assert estimates[-1] == pytest.approx(dim * (0.5 * scale**2 - math.log(scale) - 0.5), rel=0.02, abs=0.05)
    assert estimates == sorted(estimates)
