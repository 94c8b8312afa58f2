"""StateNet: a tiny meta-controller for the dual ternary VAE.

It reads the 9-D training state ``[H_A, H_B, KL_A, KL_B, grad_ratio, rho,
lambda1, lambda2, lambda3]`` and emits four corrections in ``(-1, 1)``: one for
the learning rate and one for each of lambda1..3 (the weights of VAE-A's
objective, VAE-B's objective and the entropy alignment). How the corrections
are applied and learned is the business of the ``ternary_dual`` loss term.
"""

from __future__ import annotations

from attrs import field, frozen
from attrs.validators import ge, gt, le, min_len
from torch import Tensor, nn

STATE_NAMES = ("H_A", "H_B", "KL_A", "KL_B", "grad_ratio", "rho", "lambda1", "lambda2", "lambda3")
CORRECTION_NAMES = ("lr", "lambda1", "lambda2", "lambda3")


@frozen(kw_only=True)
class StateNetConfig:
    """StateNet's size, bounds and learning rate.

    :param hidden: hidden widths of the MLP.
    :param lr_bound: the learning rate is multiplied by ``1 + lr_bound * c_lr``.
    :param lambda_bound: each lambda is multiplied by ``1 + lambda_bound * c_i`` (then the
        three are rescaled to keep their sum).
    :param lr: StateNet's own Adam learning rate.
    """

    hidden: list[int] = field(factory=lambda: [64], validator=min_len(1))
    lr_bound: float = field(default=0.1, validator=[ge(0.0), le(0.9)])
    lambda_bound: float = field(default=0.2, validator=[ge(0.0), le(0.9)])
    lr: float = field(default=1e-3, validator=gt(0.0))


class StateNet(nn.Module):
    """An MLP from the 9-D state to 4 bounded corrections (tanh).

    The last layer starts at zero, so the controller starts as the identity
    (no corrections) and moves only as it learns.

    Parameters:
        hidden (`list[int]`): hidden widths.
    """

    def __init__(self, *, hidden: list[int]):
        super().__init__()
        sizes = [len(STATE_NAMES), *hidden]
        layers: list[nn.Module] = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(fan_in, fan_out), nn.Tanh()]
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Linear(sizes[-1], len(CORRECTION_NAMES))
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, state: Tensor) -> Tensor:
        """``[..., 9]`` state -> ``[..., 4]`` corrections in ``(-1, 1)`` (order of :data:`CORRECTION_NAMES`)."""
        return self.head(self.trunk(state)).tanh()
