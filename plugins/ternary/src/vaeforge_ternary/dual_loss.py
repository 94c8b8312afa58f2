"""``ternary_dual``: the objective of the dual ternary VAE, as named terms.

Per step, with ``CE`` the categorical cross-entropy and ``KL`` the KL to the
standard normal prior of each branch (both per example, batch mean)::

    a          = lambda1 * s_A * (CE_A + beta_A * KL_A)
    b          = lambda2 * s_B * (CE_B + beta_B * KL_B)
    align      = lambda3 * |H(zA) - H(zB)|                 (entropy alignment)
    entropy_b  = -w_ent * mean_i H(mean_batch p_B(x_i | z))  (VAE-B output entropy)
    repulsion_b = w_rep * mean_{i != j} exp(-|muB_i - muB_j|^2 / (2 s^2 d))

``beta_A`` ramps linearly from ``beta_start`` to ``beta`` over
``beta_warmup_epochs``; ``beta_B`` follows the same ramp ``beta_b_lag_epochs``
later (a phase lag). ``s_A = sqrt(g_B / g_A)`` and ``s_B = 1 / s_A`` are the
gradient-balance scales, from the moving averages ``g`` of the branches'
gradient norms (kept by the model), clipped to ``[balance_min, balance_max]``:
the branch with the larger gradients is damped, the other amplified.

With a StateNet, the lambdas and the learning rate get bounded corrections
from the 9-D state (see :mod:`vaeforge_ternary.models.statenet`). StateNet's state is
``[H_A/d, H_B/d, KL_A/d, KL_B/d, log grad_ratio, rho, lambda1..3]`` (``d`` the
latent size, the lambdas those of the previous step); it is trained here,
after every main optimizer step, with its own optimizer (the
:class:`vaeforge.api.AuxiliaryLoss` interface):

- the lambda corrections minimise ``sum_i lambda_i * L_i`` over the three
  objectives just computed (detached); the lambdas are renormalised to keep
  their sum, so StateNet can only shift weight between the objectives;
- the learning-rate correction follows the hypergradient (Baydin et al.,
  2018): the derivative of the loss by the learning rate is proportional to
  ``g_t . u_{t-1}``, this step's gradient against the previous update, and
  their cosine is used as the gradient of the correction. A negative cosine
  (the gradient still points where the last step went: it undershot) raises
  the learning rate, a positive one (it overshot) lowers it. The correction
  multiplies the scheduled learning rate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from attrs import field, frozen
from attrs.validators import ge, gt
from torch import Tensor

from vaeforge.api import Context, ModelOutput
from vaeforge.distributions import categorical_nll
from vaeforge_ternary.models.statenet import CORRECTION_NAMES, STATE_NAMES, StateNet, StateNetConfig


@frozen(kw_only=True)
class TernaryDualLossConfig:
    """Weights and switches of the dual objective.

    :param beta: the KL weight each branch ramps to.
    :param beta_start: the KL weight at the start of the ramp.
    :param beta_warmup_epochs: epochs of VAE-A's linear KL ramp (0: ``beta`` from the start).
    :param beta_b_lag_epochs: VAE-B's ramp starts this many epochs after VAE-A's.
    :param lambda1: weight of VAE-A's objective.
    :param lambda2: weight of VAE-B's objective.
    :param lambda3: weight of the entropy alignment ``|H(zA) - H(zB)|``; 0 switches it off.
    :param output_entropy: weight of VAE-B's output-entropy bonus; 0 switches it off.
    :param repulsion: weight of the repulsion between VAE-B's posterior means; 0 switches it off.
    :param repulsion_scale: length scale (per latent dimension) of the repulsion kernel.
    :param grad_balance: scale each branch's objective by its gradient-balance factor.
    :param balance_min: the smallest gradient-balance factor.
    :param balance_max: the largest gradient-balance factor.
    :param statenet: the StateNet meta-controller; null switches it off.
    """

    beta: float = field(default=0.8, validator=ge(0.0))
    beta_start: float = field(default=0.0, validator=ge(0.0))
    beta_warmup_epochs: float = field(default=6.0, validator=ge(0.0))
    beta_b_lag_epochs: float = field(default=1.0, validator=ge(0.0))
    lambda1: float = field(default=1.0, validator=ge(0.0))
    lambda2: float = field(default=1.0, validator=ge(0.0))
    lambda3: float = field(default=0.1, validator=ge(0.0))
    output_entropy: float = field(default=0.0, validator=ge(0.0))
    repulsion: float = field(default=0.0, validator=ge(0.0))
    repulsion_scale: float = field(default=1.0, validator=gt(0.0))
    grad_balance: bool = True
    balance_min: float = field(default=0.5, validator=gt(0.0))
    balance_max: float = field(default=2.0, validator=gt(0.0))
    statenet: StateNetConfig | None = field(factory=StateNetConfig)

    def __attrs_post_init__(self) -> None:
        if self.balance_min > 1.0 or self.balance_max < 1.0:
            raise ValueError(f"need balance_min <= 1 <= balance_max, got [{self.balance_min}, {self.balance_max}]")


def gaussian_entropy(posterior: Any) -> Tensor:
    """Differential entropy of a diagonal Gaussian posterior, per example, batch mean."""
    return 0.5 * (1.0 + math.log(2.0 * math.pi) + posterior.logvar).sum(dim=-1).mean()


def output_entropy(logits: Tensor) -> Tensor:
    """Entropy of the batch-averaged class distribution at each position, summed over positions."""
    mean = logits.softmax(dim=-1).mean(dim=0)
    return -(mean * mean.clamp_min(1e-12).log()).sum()


def repulsion(mean: Tensor, scale: float) -> Tensor:
    """Mean Gaussian-kernel similarity between distinct rows of ``mean`` (lower = more spread out)."""
    n, d = mean.shape
    if n < 2:
        return mean.sum() * 0.0
    similarity = torch.exp(-torch.cdist(mean, mean).pow(2) / (2.0 * scale**2 * d))
    return (similarity.sum() - n) / (n * (n - 1))


class TernaryDualLoss:
    """The dual VAE objective as named terms; owns and trains the optional StateNet.

    Expects the outputs of ``ternary_dual_vae`` (``recon_b``, ``posterior_b``,
    ``rho``, ``grad_norms``, ... in ``extras``).

    Parameters:
        config (`TernaryDualLossConfig`): weights, schedules and switches.
    """

    def __init__(self, config: TernaryDualLossConfig):
        self.config = config
        self.base = torch.tensor([config.lambda1, config.lambda2, config.lambda3])
        self.statenet: StateNet | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        if config.statenet is not None:
            self.statenet = StateNet(hidden=list(config.statenet.hidden))
            self.optimizer = torch.optim.Adam(self.statenet.parameters(), lr=config.statenet.lr)
        self._pending: dict[str, Tensor] | None = None  # the last training step's state and objectives
        self._previous_lambdas: Tensor | None = None
        self._previous: list[Tensor] | None = None
        self._update: list[Tensor] | None = None
        self._lr: list[tuple[float, float]] | None = None  # per group: (scheduled, applied)

    # -- the objective ------------------------------------------------------------------

    def betas(self, epoch: float) -> tuple[float, float]:
        """``(beta_A, beta_B)`` at a fractional epoch."""
        c = self.config

        def ramp(t: float) -> float:
            if c.beta_warmup_epochs == 0:
                return c.beta if t >= 0 else c.beta_start
            return c.beta_start + (c.beta - c.beta_start) * min(max(t / c.beta_warmup_epochs, 0.0), 1.0)

        return ramp(epoch), ramp(epoch - c.beta_b_lag_epochs)

    def balance(self, grad_norms: Tensor) -> Tensor:
        """Gradient-balance factors ``[s_A, s_B]`` (ones until both norms are known or when switched off)."""
        if not self.config.grad_balance:
            return torch.ones_like(grad_norms)
        known = (grad_norms > 0).all()
        safe = grad_norms.clamp_min(1e-12)
        scales = (safe.flip(0) / safe).sqrt().clamp(self.config.balance_min, self.config.balance_max)
        return torch.where(known, scales, torch.ones_like(scales))

    def __call__(self, out: ModelOutput, batch: Mapping[str, Tensor], ctx: Context) -> dict[str, Tensor]:
        x, extras = batch["x"], out.extras
        ce_a, ce_b = categorical_nll(out.recon, x).mean(), categorical_nll(extras["recon_b"], x).mean()
        kl_a, kl_b = out.posterior.kl().mean(), extras["posterior_b"].kl().mean()
        h_a, h_b = gaussian_entropy(out.posterior), gaussian_entropy(extras["posterior_b"])
        epoch = ctx.step / ctx.steps_per_epoch if ctx.steps_per_epoch else float(ctx.epoch)
        beta_a, beta_b = self.betas(epoch)
        grad_norms = extras["grad_norms"]
        scale = self.balance(grad_norms)
        grad_ratio = torch.where(grad_norms[1] > 0, grad_norms[0] / grad_norms[1].clamp_min(1e-12),
                                 torch.ones_like(grad_norms[0]))
        objectives = torch.stack([scale[0] * (ce_a + beta_a * kl_a), scale[1] * (ce_b + beta_b * kl_b),
                                  (h_a - h_b).abs()])
        lambdas = self.base.to(objectives.device)
        if self.statenet is not None:
            d = out.posterior.mean.shape[-1]
            previous = self._previous_lambdas.to(lambdas.device) if self._previous_lambdas is not None else lambdas
            state = torch.stack([h_a / d, h_b / d, kl_a / d, kl_b / d, grad_ratio.clamp_min(1e-6).log(),
                                 extras["rho"].float(), *previous]).detach()
            with torch.no_grad():
                lambdas, corrections = self._corrected(state)
            if ctx.training:
                self._pending = {"state": state, "objectives": objectives.detach()}
                self._previous_lambdas = lambdas
            for name, value in zip(CORRECTION_NAMES, corrections):
                ctx.log(f"statenet/{name}", value)
        terms = {"a": lambdas[0] * objectives[0], "b": lambdas[1] * objectives[1]}
        if self.config.lambda3 > 0:
            terms["align"] = lambdas[2] * objectives[2]
        if self.config.output_entropy > 0:
            terms["entropy_b"] = -self.config.output_entropy * output_entropy(extras["recon_b"])
        if self.config.repulsion > 0:
            terms["repulsion_b"] = self.config.repulsion * repulsion(extras["posterior_b"].mean,
                                                                     self.config.repulsion_scale)
        logged = {"ce_a": ce_a, "ce_b": ce_b, "kl_a": kl_a, "kl_b": kl_b, "H_A": h_a, "H_B": h_b,
                  "beta_a": beta_a, "beta_b": beta_b, "grad_ratio": grad_ratio, "scale_a": scale[0],
                  "scale_b": scale[1], "lambda1": lambdas[0], "lambda2": lambdas[1], "lambda3": lambdas[2]}
        logged.update({k: extras[k] for k in ("rho", "tau_a", "tau_b") if k in extras})
        for name, value in logged.items():
            ctx.log(name, value)
        return terms

    # -- StateNet -----------------------------------------------------------------------

    def _corrected(self, state: Tensor) -> tuple[Tensor, Tensor]:
        """``(lambdas, corrections)`` for a state; differentiable in StateNet's parameters."""
        assert self.statenet is not None and self.config.statenet is not None
        self.statenet.to(state.device)
        corrections = self.statenet(state)
        base = self.base.to(state.device)
        raw = base * (1.0 + self.config.statenet.lambda_bound * corrections[1:])
        lambdas = raw * (base.sum() / raw.sum().clamp_min(1e-12))
        return lambdas, corrections

    def auxiliary_step(self, out: ModelOutput, batch: Mapping[str, Tensor], ctx: Context) -> dict[str, Tensor]:
        """Train StateNet on the step just taken and apply its learning-rate correction."""
        if self.statenet is None or self._pending is None or ctx.optimizer is None:
            return {}
        assert self.optimizer is not None and self.config.statenet is not None
        cosine = self._hypergradient(ctx.optimizer)
        lambdas, corrections = self._corrected(self._pending["state"])
        lr_scale = 1.0 + self.config.statenet.lr_bound * corrections[0]
        # d loss / d lr is proportional to g_t . update_{t-1}: its cosine is the learning-rate head's gradient
        objective = (lambdas * self._pending["objectives"]).sum() + cosine * lr_scale
        self.optimizer.zero_grad(set_to_none=True)
        objective.backward()
        self.optimizer.step()
        scheduled = self._apply_lr(ctx.optimizer, float(lr_scale.detach()))
        return {"lr_scale": lr_scale.detach(), "lr_scheduled": torch.tensor(scheduled),
                "hypergradient_cosine": cosine}

    @torch.no_grad()
    def _hypergradient(self, optimizer: torch.optim.Optimizer) -> Tensor:
        """Cosine between the gradient of this step and the update of the previous one (0 at first)."""
        params = [p for group in optimizer.param_groups for p in group["params"]]
        cosine = torch.zeros((), device=params[0].device)
        if self._update is not None and len(self._update) == len(params):
            grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
            dot = sum((g * u).sum() for g, u in zip(grads, self._update))
            norm = torch.sqrt(sum(g.pow(2).sum() for g in grads) * sum(u.pow(2).sum() for u in self._update))
            cosine = dot / norm.clamp_min(1e-12)
        current = [p.detach().clone() for p in params]
        if self._previous is not None and len(self._previous) == len(current):
            self._update = [c - p for c, p in zip(current, self._previous)]
        self._previous = current
        return cosine

    def _apply_lr(self, optimizer: torch.optim.Optimizer, scale: float) -> float:
        """Multiply the scheduled learning rate of every group by ``scale``; return group 0's scheduled rate."""
        previous = self._lr or [(g["lr"], math.nan) for g in optimizer.param_groups]
        updated = []
        for group, (scheduled, applied) in zip(optimizer.param_groups, previous):
            if group["lr"] != applied:  # a scheduler (or someone else) set a new rate
                scheduled = group["lr"]
            group["lr"] = scheduled * scale
            updated.append((scheduled, group["lr"]))
        self._lr = updated
        return updated[0][0]

    # -- checkpoints ----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """StateNet, its optimizer and the controller's memory (tensors, numbers and lists only)."""
        if self.statenet is None:
            return {}
        assert self.optimizer is not None
        return {
            "statenet": dict(self.statenet.state_dict()),
            "optimizer": self.optimizer.state_dict(),
            "pending": self._pending,
            "previous_lambdas": self._previous_lambdas,
            "previous": self._previous,
            "update": self._update,
            "lr": [list(pair) for pair in self._lr] if self._lr else None,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        if self.statenet is None or not state:
            return
        assert self.optimizer is not None
        self.statenet.load_state_dict(state["statenet"])
        self.optimizer.load_state_dict(state["optimizer"])
        self._pending = dict(state["pending"]) if state["pending"] is not None else None
        self._previous_lambdas = state["previous_lambdas"]
        self._previous = list(state["previous"]) if state["previous"] is not None else None
        self._update = list(state["update"]) if state["update"] is not None else None
        self._lr = [(float(s), float(a)) for s, a in state["lr"]] if state["lr"] else None


__all__ = ["STATE_NAMES", "TernaryDualLoss", "TernaryDualLossConfig"]
