"""Riemannian optimizers: ``riemannian_adam`` and ``riemannian_sgd`` (geoopt).

Both step a ``geoopt.ManifoldParameter`` along its manifold (a point on a
Poincaré ball stays strictly inside it) and every other parameter as the
Euclidean optimizer would. Factories follow the registry's optimizer
convention, ``factory(params, config)``; geoopt is imported inside them.

Where geoopt differs from ``torch.optim`` (kept as geoopt has it):

- ``riemannian_adam`` matches ``torch.optim.Adam`` on Euclidean parameters
  (up to float round-off), but adds ``weight_decay * p`` to ``p.grad`` in place.
- ``riemannian_sgd`` matches ``torch.optim.SGD`` without momentum. With
  momentum, geoopt seeds the buffer with the first gradient *and* then
  applies the update, so the first step is ``(1 + momentum - dampening)``
  times torch's; later steps follow the usual recursion.
- The step count is a Python ``int`` (in each parameter's state for Adam, in
  the parameter group for SGD), not a tensor. ``torch.optim.Adam`` turns it
  into a float32 tensor when a state dict is loaded, which would change the
  bias corrections' round-off; a load hook turns it back, so a resumed run
  continues bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from attrs import field, frozen
from attrs.validators import ge, gt, le, lt, optional

from vaeforge_hyperbolic._geoopt import load_geoopt


def _betas(instance: Any, attribute: Any, value: tuple[float, float]) -> None:
    if len(value) != 2 or not all(0.0 <= beta < 1.0 for beta in value):
        raise ValueError(f"'{attribute.name}' must be two numbers in [0, 1), got {value!r}")


@frozen(kw_only=True)
class RiemannianAdamConfig:
    """Riemannian Adam: Adam along the manifold for manifold parameters, plain Adam for the rest.

    :param lr: learning rate.
    :param betas: decay rates of the first and second moment averages, each in [0, 1).
    :param eps: added to the denominator for numerical stability.
    :param weight_decay: L2 penalty added to the gradient (as in ``torch.optim.Adam``, not AdamW).
    :param amsgrad: use the AMSGrad variant.
    :param stabilize: every this many steps, project manifold parameters and their
        momentum back onto the manifold (guards against round-off); None never does.
    """

    lr: float = field(default=1e-3, validator=gt(0.0))
    betas: tuple[float, float] = field(default=(0.9, 0.999), validator=_betas)
    eps: float = field(default=1e-8, validator=gt(0.0))
    weight_decay: float = field(default=0.0, validator=ge(0.0))
    amsgrad: bool = False
    stabilize: int | None = field(default=None, validator=optional(ge(1)))


@frozen(kw_only=True)
class RiemannianSGDConfig:
    """Riemannian SGD: SGD along the manifold for manifold parameters, plain SGD for the rest.

    :param lr: learning rate.
    :param momentum: momentum factor in [0, 1); momentum is parallel-transported along the manifold.
    :param dampening: dampening for momentum, in [0, 1].
    :param weight_decay: L2 penalty added to the gradient.
    :param nesterov: Nesterov momentum; needs ``momentum > 0`` and ``dampening == 0``.
    :param stabilize: every this many steps, project manifold parameters back onto
        the manifold; None never does.
    """

    lr: float = field(default=1e-2, validator=gt(0.0))
    momentum: float = field(default=0.0, validator=[ge(0.0), lt(1.0)])
    dampening: float = field(default=0.0, validator=[ge(0.0), le(1.0)])
    weight_decay: float = field(default=0.0, validator=ge(0.0))
    nesterov: bool = False
    stabilize: int | None = field(default=None, validator=optional(ge(1)))

    def __attrs_post_init__(self) -> None:
        if self.nesterov and (self.momentum <= 0.0 or self.dampening != 0.0):
            raise ValueError("nesterov needs momentum > 0 and dampening == 0")


def riemannian_adam(params: Iterable[torch.nn.Parameter], config: RiemannianAdamConfig) -> torch.optim.Optimizer:
    """Riemannian Adam (geoopt): manifold parameters move along their manifold, the rest as with Adam.

    Builds ``geoopt.optim.RiemannianAdam`` over ``params`` (the trainable parameters).
    """
    geoopt = load_geoopt()

    optimizer = geoopt.optim.RiemannianAdam(
        list(params),
        lr=config.lr,
        betas=tuple(config.betas),
        eps=config.eps,
        weight_decay=config.weight_decay,
        amsgrad=config.amsgrad,
        stabilize=config.stabilize,
    )
    optimizer.register_load_state_dict_post_hook(_integer_steps)
    return optimizer


def _integer_steps(optimizer: torch.optim.Optimizer) -> None:
    """Undo ``torch.optim.Adam.__setstate__`` turning geoopt's integer step counts into tensors."""
    for state in optimizer.state.values():
        if isinstance(state.get("step"), torch.Tensor):
            state["step"] = int(state["step"].item())


def riemannian_sgd(params: Iterable[torch.nn.Parameter], config: RiemannianSGDConfig) -> torch.optim.Optimizer:
    """Riemannian SGD (geoopt): manifold parameters move along their manifold, the rest as with SGD.

    Builds ``geoopt.optim.RiemannianSGD`` over ``params`` (the trainable parameters).
    """
    geoopt = load_geoopt()

    return geoopt.optim.RiemannianSGD(
        list(params),
        lr=config.lr,
        momentum=config.momentum,
        dampening=config.dampening,
        weight_decay=config.weight_decay,
        nesterov=config.nesterov,
        stabilize=config.stabilize,
    )
