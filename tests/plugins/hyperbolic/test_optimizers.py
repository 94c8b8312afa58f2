"""``riemannian_adam`` and ``riemannian_sgd``: ball points stay in the ball, Euclidean ones move as in torch."""

from __future__ import annotations

import json
import math

import attrs
import pytest
import torch

from vaeforge_hyperbolic.optimizers import (
    RiemannianAdamConfig,
    RiemannianSGDConfig,
    riemannian_adam,
    riemannian_sgd,
)

geoopt = pytest.importorskip("geoopt")

BUILDERS = [
    pytest.param(riemannian_adam, RiemannianAdamConfig(lr=0.5), id="adam"),
    pytest.param(riemannian_sgd, RiemannianSGDConfig(lr=0.5, momentum=0.9), id="sgd-momentum"),
    pytest.param(riemannian_sgd, RiemannianSGDConfig(lr=10.0), id="sgd"),
]


def _ball_points(curvature: float, n: int = 64, dim: int = 8) -> torch.nn.Parameter:
    ball = geoopt.PoincareBall(c=curvature)
    generator = torch.Generator().manual_seed(0)
    start = ball.expmap0(torch.randn(n, dim, generator=generator))
    return geoopt.ManifoldParameter(start, manifold=ball)


@pytest.mark.parametrize(("build", "config"), BUILDERS)
@pytest.mark.parametrize("curvature", [0.5, 1.0, 2.0])
def test_points_stay_strictly_inside_the_ball_under_large_gradients(build, config, curvature):
    points = _ball_points(curvature)
    optimizer = build([points], config)
    generator = torch.Generator().manual_seed(1)
    radius = 1.0 / math.sqrt(curvature)
    for step in range(100):
        optimizer.zero_grad()
        # push outwards, with random large kicks on top
        direction = torch.randn(points.shape, generator=generator)
        loss = -1e4 * points.norm(dim=-1).sum() + 1e3 * (points * direction).sum()
        loss.backward()
        optimizer.step()
        norms = points.detach().norm(dim=-1)
        assert torch.isfinite(points).all(), f"non-finite point after step {step}"
        assert norms.max().item() < radius, f"a point left the ball after step {step}"
    assert norms.max().item() > 0.99 * radius  # the test really pushed points to the edge


@pytest.mark.parametrize(
    ("build", "config", "reference"),
    [
        (riemannian_adam, RiemannianAdamConfig(lr=1e-2, betas=(0.8, 0.99), weight_decay=1e-3),
         lambda p: torch.optim.Adam(p, lr=1e-2, betas=(0.8, 0.99), weight_decay=1e-3)),
        (riemannian_adam, RiemannianAdamConfig(lr=1e-2, amsgrad=True),
         lambda p: torch.optim.Adam(p, lr=1e-2, amsgrad=True)),
        (riemannian_sgd, RiemannianSGDConfig(lr=1e-2, weight_decay=1e-2),
         lambda p: torch.optim.SGD(p, lr=1e-2, weight_decay=1e-2)),
    ],
    ids=["adam", "amsgrad", "sgd"],
)
def test_euclidean_parameters_move_as_with_the_torch_optimizer(build, config, reference):
    torch.manual_seed(0)
    ours = torch.nn.Linear(5, 3)
    theirs = torch.nn.Linear(5, 3)
    theirs.load_state_dict(ours.state_dict())
    optimizers = [build(list(ours.parameters()), config), reference(list(theirs.parameters()))]
    for _ in range(50):
        x = torch.randn(16, 5)
        for model, optimizer in zip((ours, theirs), optimizers):
            optimizer.zero_grad()
            model(x).pow(2).sum().backward()
            optimizer.step()
    for mine, expected in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(mine, expected, rtol=1e-5, atol=1e-6)


def test_mixed_parameters_in_one_optimizer():
    points = _ball_points(1.0, n=4, dim=3)
    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = riemannian_adam([points, weight], RiemannianAdamConfig(lr=0.1))
    for _ in range(20):
        optimizer.zero_grad()
        ((points * weight).sum() - points.norm(dim=-1).sum()).backward()
        optimizer.step()
    assert isinstance(points, geoopt.ManifoldParameter)
    assert points.norm(dim=-1).max().item() < 1.0
    assert not torch.equal(weight.detach(), torch.ones(3))


@pytest.mark.parametrize(("build", "config"), BUILDERS)
def test_resume_through_a_checkpoint_continues_bit_for_bit(build, config):
    """The optimizer state survives the core's JSON + tensors checkpoint format unchanged."""
    from vaeforge.checkpoint import flatten_state, unflatten_state

    def run(optimizer, points, steps, seed):
        generator = torch.Generator().manual_seed(seed)
        for _ in range(steps):
            optimizer.zero_grad()
            (points * torch.randn(points.shape, generator=generator)).sum().backward()
            optimizer.step()

    points = _ball_points(1.0, n=8, dim=4)
    optimizer = build([points], config)
    run(optimizer, points, 5, seed=1)
    skeleton, tensors = flatten_state(optimizer.state_dict())
    saved_points, skeleton = points.detach().clone(), json.loads(json.dumps(skeleton))
    run(optimizer, points, 5, seed=2)

    resumed = _ball_points(1.0, n=8, dim=4)
    with torch.no_grad():
        resumed.copy_(saved_points)
    resumed_optimizer = build([resumed], config)
    resumed_optimizer.load_state_dict(unflatten_state(skeleton, tensors))
    run(resumed_optimizer, resumed, 5, seed=2)
    assert torch.equal(resumed, points)


@pytest.mark.parametrize(
    ("config_class", "kwargs", "message"),
    [
        (RiemannianAdamConfig, {"lr": 0.0}, "lr"),
        (RiemannianAdamConfig, {"lr": -1e-3}, "lr"),
        (RiemannianAdamConfig, {"betas": (0.9, 1.0)}, "betas"),
        (RiemannianAdamConfig, {"eps": 0.0}, "eps"),
        (RiemannianAdamConfig, {"weight_decay": -1.0}, "weight_decay"),
        (RiemannianAdamConfig, {"stabilize": 0}, "stabilize"),
        (RiemannianSGDConfig, {"lr": 0.0}, "lr"),
        (RiemannianSGDConfig, {"momentum": -0.1}, "momentum"),
        (RiemannianSGDConfig, {"momentum": 1.0}, "momentum"),
        (RiemannianSGDConfig, {"nesterov": True}, "nesterov"),
    ],
)
def test_bad_settings_are_rejected(config_class, kwargs, message):
    with pytest.raises(ValueError, match=message):
        config_class(**kwargs)


def test_configs_are_frozen_and_documented():
    for config_class in (RiemannianAdamConfig, RiemannianSGDConfig):
        for field in attrs.fields(config_class):
            assert f":param {field.name}:" in config_class.__doc__
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            config_class().lr = 1.0
