"""``ternary_dual_vae``: two coupled VAEs over the ternary operations.

VAE-A is the *chaotic* branch (a cyclic, higher sampling temperature), VAE-B
the *frozen* one (a temperature that decreases monotonically, a residual
decoder). Each branch sees the other's latent only through a stop-gradient
cross-injection::

    z~A = (1 - rho) zA + rho sg(zB)        z~B = (1 - rho) zB + rho sg(zA)

so no gradient of A's loss reaches B's parameters and vice versa (in eval mode
each branch decodes its own latent, as ``sample`` does). rho follows
four phases (isolation, consolidation, resonant coupling, ultra-exploration);
during resonant coupling it only rises while the two branches' gradient norms
are balanced. Every mechanism can be switched off in the config.

The model keeps its own training clock (examples seen, in epochs of
``data_info.num_train``) and exponential moving averages of each branch's
gradient norm: hooks on the parameters add up the squared gradients of every
backward pass, and the next training forward folds them into the averages.
All of it lives in buffers, so it is checkpointed (a resumed run continues
exactly) and copied to the EMA model. The loss term ``ternary_dual`` turns the
outputs into objectives.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import partial
from typing import Any

import torch
from attrs import field, frozen
from attrs.validators import ge, gt, in_, le, min_len
from torch import Tensor, nn

from vaeforge.api import DataInfo, ModelOutput
from vaeforge.blocks import ACTIVATIONS
from vaeforge.distributions import DiagonalGaussian
from vaeforge_ternary.models.blocks import TritDecoder, TritEncoder, check_data


@frozen(kw_only=True)
class RhoPhasesConfig:
    """The phase schedule of the cross-injection strength rho (epochs are fractional).

    :param isolation_epochs: rho stays 0 until this epoch (the branches learn alone).
    :param consolidation_epochs: rho ramps linearly from 0 to ``consolidation_rho`` until this epoch.
    :param resonance_epochs: rho ramps from ``consolidation_rho`` towards ``resonance_rho`` until
        this epoch, but only moves while the gradient-norm ratio of the branches is within
        ``[1 / gate_ratio, gate_ratio]``; otherwise it holds.
    :param consolidation_rho: rho at the end of consolidation.
    :param resonance_rho: the most rho reaches in resonant coupling.
    :param exploration_rho: rho after ``resonance_epochs`` (ultra-exploration).
    :param gate_ratio: the gradient-norm ratio band that opens the resonance gate.
    """

    isolation_epochs: float = field(default=2.0, validator=ge(0.0))
    consolidation_epochs: float = field(default=6.0, validator=ge(0.0))
    resonance_epochs: float = field(default=14.0, validator=ge(0.0))
    consolidation_rho: float = field(default=0.1, validator=[ge(0.0), le(1.0)])
    resonance_rho: float = field(default=0.3, validator=[ge(0.0), le(1.0)])
    exploration_rho: float = field(default=0.05, validator=[ge(0.0), le(1.0)])
    gate_ratio: float = field(default=2.0, validator=ge(1.0))

    def __attrs_post_init__(self) -> None:
        if not self.isolation_epochs <= self.consolidation_epochs <= self.resonance_epochs:
            raise ValueError("phases must be ordered: isolation_epochs <= consolidation_epochs <= resonance_epochs")


@frozen(kw_only=True)
class TemperatureConfig:
    """Sampling temperatures: training draws z = mu + tau * sigma * eps.

    :param a_base: VAE-A's mean temperature.
    :param a_amplitude: VAE-A's temperature swings by this much around ``a_base`` (cosine).
    :param a_period: the period of VAE-A's cycle, in epochs.
    :param a_exploration_boost: added to VAE-A's temperature during ultra-exploration.
    :param b_start: VAE-B's temperature at the start.
    :param b_end: VAE-B's temperature after ``b_epochs`` (monotonic, linear).
    :param b_epochs: epochs over which VAE-B's temperature moves from ``b_start`` to ``b_end``.
    """

    a_base: float = field(default=1.0, validator=gt(0.0))
    a_amplitude: float = field(default=0.1, validator=ge(0.0))
    a_period: float = field(default=5.0, validator=gt(0.0))
    a_exploration_boost: float = field(default=0.0, validator=ge(0.0))
    b_start: float = field(default=1.0, validator=gt(0.0))
    b_end: float = field(default=0.8, validator=gt(0.0))
    b_epochs: float = field(default=20.0, validator=gt(0.0))

    def __attrs_post_init__(self) -> None:
        if self.a_amplitude >= self.a_base:
            raise ValueError(f"a_amplitude ({self.a_amplitude}) must be below a_base ({self.a_base})")


@frozen(kw_only=True)
class TernaryDualVAEConfig:
    """Sizes and mechanisms of :class:`TernaryDualVAE`.

    :param latent_dim: dimensions of each branch's Gaussian latent (the same for both,
        so latents can be mixed).
    :param a_encoder_hidden: hidden widths of VAE-A's encoder.
    :param a_decoder_hidden: hidden widths of VAE-A's decoder.
    :param b_encoder_hidden: hidden widths of VAE-B's encoder.
    :param b_decoder_hidden: hidden widths of VAE-B's decoder.
    :param b_residual: residual hidden layers in VAE-B's decoder (between layers of equal width).
    :param activation: ``relu``, ``gelu``, ``silu``, ``tanh`` or ``leaky_relu``.
    :param cross_injection: mix each branch's latent with the other's (stop-gradient) by rho.
    :param rho: the phase schedule of rho.
    :param temperature: scale the posterior noise while training by the branch temperatures;
        off means tau = 1 for both.
    :param temperatures: the temperature schedules.
    :param grad_ema_decay: decay of the moving averages of each branch's gradient norm.
    :param sample_from: which branch ``sample`` decodes prior draws with: ``a``, ``b``, or
        ``both`` (the first half of each call from A, the rest from B).
    """

    latent_dim: int = field(default=32, validator=ge(1))
    a_encoder_hidden: list[int] = field(factory=lambda: [256, 128], validator=min_len(1))
    a_decoder_hidden: list[int] = field(factory=lambda: [112, 224], validator=min_len(1))
    b_encoder_hidden: list[int] = field(factory=lambda: [256, 128], validator=min_len(1))
    b_decoder_hidden: list[int] = field(factory=lambda: [120, 120, 120], validator=min_len(1))
    b_residual: bool = True
    activation: str = field(default="silu", validator=in_(list(ACTIVATIONS)))
    cross_injection: bool = True
    rho: RhoPhasesConfig = field(factory=RhoPhasesConfig)
    temperature: bool = True
    temperatures: TemperatureConfig = field(factory=TemperatureConfig)
    grad_ema_decay: float = field(default=0.99, validator=[ge(0.0), le(1.0)])
    sample_from: str = field(default="both", validator=in_(["a", "b", "both"]))


def rho_target(phases: RhoPhasesConfig, epoch: float) -> tuple[str, float]:
    """The phase at ``epoch`` and the rho its ramp asks for (before the resonance gate)."""
    if epoch < phases.isolation_epochs:
        return "isolation", 0.0
    if epoch < phases.consolidation_epochs:
        span = phases.consolidation_epochs - phases.isolation_epochs
        return "consolidation", phases.consolidation_rho * (epoch - phases.isolation_epochs) / span
    if epoch < phases.resonance_epochs:
        span = phases.resonance_epochs - phases.consolidation_epochs
        t = (epoch - phases.consolidation_epochs) / span
        return "resonance", phases.consolidation_rho + (phases.resonance_rho - phases.consolidation_rho) * t
    return "exploration", phases.exploration_rho


def temperatures(config: TemperatureConfig, epoch: float, exploring: bool) -> tuple[float, float]:
    """``(tau_A, tau_B)`` at ``epoch``: a cosine cycle for A, a linear ramp for B."""
    tau_a = config.a_base + config.a_amplitude * math.cos(2.0 * math.pi * epoch / config.a_period)
    if exploring:
        tau_a += config.a_exploration_boost
    t = min(epoch / config.b_epochs, 1.0)
    return tau_a, config.b_start + (config.b_end - config.b_start) * t


class TernaryDualVAE(nn.Module):
    """Two VAEs over the ternary operations, coupled by stop-gradient cross-injection.

    ``forward`` returns VAE-A's logits and posterior as ``recon`` / ``posterior`` /
    ``z``; ``extras`` holds VAE-B's (``recon_b``, ``posterior_b``, ``z_b``) and the
    controls of this step as 0-d tensors: ``rho``, ``tau_a``, ``tau_b``, ``epoch`` and
    ``grad_norms`` (the moving averages ``[|g_A|, |g_B|]``; zeros until the first step).

    Parameters:
        config (`TernaryDualVAEConfig`): sizes, schedules and switches.
        data_info (`DataInfo`): must describe 9 categorical positions with 3 classes;
            ``num_train`` sets the length of an epoch for the schedules.
    """

    def __init__(self, config: TernaryDualVAEConfig, data_info: DataInfo):
        super().__init__()
        check_data(data_info)
        if not data_info.num_train:
            raise ValueError("ternary_dual_vae needs data with a known num_train (its schedules count epochs)")
        self.config = config
        self.num_train = data_info.num_train
        self.latent_dim = config.latent_dim
        act = config.activation
        # VAE-A: chaotic
        self.encoder_a = TritEncoder(latent_dim=config.latent_dim, hidden=list(config.a_encoder_hidden), act=act)
        self.decoder_a = TritDecoder(latent_dim=config.latent_dim, hidden=list(config.a_decoder_hidden), act=act)
        # VAE-B: frozen, residual decoder
        self.encoder_b = TritEncoder(latent_dim=config.latent_dim, hidden=list(config.b_encoder_hidden), act=act)
        self.decoder_b = TritDecoder(latent_dim=config.latent_dim, hidden=list(config.b_decoder_hidden), act=act,
                                     residual=config.b_residual)
        # training clock and gradient statistics
        self.register_buffer("examples_seen", torch.zeros((), dtype=torch.float64))
        self.register_buffer("grad_norms", torch.zeros(2))
        self.register_buffer("grad_sq", torch.zeros(2))  # squared gradient norms of the last backward
        self.register_buffer("rho", torch.zeros(()))
        self._seen: float | None = None
        self.register_load_state_dict_post_hook(lambda module, keys: setattr(module, "_seen", None))
        for index, branch in enumerate("ab"):
            for parameter in self.branch_parameters(branch):
                parameter.register_post_accumulate_grad_hook(partial(self._accumulate_grad, index))

    # -- the branches ----------------------------------------------------------

    def encode(self, x: Tensor) -> DiagonalGaussian:
        """VAE-A's posterior q_A(z | x)."""
        return self.encoder_a(x)

    def encode_b(self, x: Tensor) -> DiagonalGaussian:
        """VAE-B's posterior q_B(z | x)."""
        return self.encoder_b(x)

    def decode(self, z: Tensor) -> Tensor:
        """VAE-A's ``[batch, 9, 3]`` logits."""
        return self.decoder_a(z)

    def decode_b(self, z: Tensor) -> Tensor:
        """VAE-B's ``[batch, 9, 3]`` logits."""
        return self.decoder_b(z)

    def branch_parameters(self, branch: str) -> list[nn.Parameter]:
        """The parameters of branch ``"a"`` or ``"b"`` (encoder and decoder)."""
        modules = (self.encoder_a, self.decoder_a) if branch == "a" else (self.encoder_b, self.decoder_b)
        return [p for m in modules for p in m.parameters()]

    # -- forward ------------------------------------------------------------------

    def forward(self, batch: Mapping[str, Tensor]) -> ModelOutput:
        x = batch["x"]
        q_a, q_b = self.encode(x), self.encode_b(x)
        if self.training:
            controls = self._advance(x.shape[0])
            z_a = q_a.sample(temperature=controls["tau_a"])
            z_b = q_b.sample(temperature=controls["tau_b"])
        else:
            controls = {"tau_a": 1.0, "tau_b": 1.0, "epoch": self._epoch()}
            z_a, z_b = q_a.mode(), q_b.mode()
        injecting = self.training and self.config.cross_injection
        rho = self.rho if injecting else torch.zeros_like(self.rho)
        mixed_a = (1.0 - rho) * z_a + rho * z_b.detach()
        mixed_b = (1.0 - rho) * z_b + rho * z_a.detach()
        extras: dict[str, Any] = {
            "recon_b": self.decode_b(mixed_b),
            "posterior_b": q_b,
            "z_b": mixed_b,
            "rho": rho.detach(),
            "grad_norms": self.grad_norms.clone(),
            **{k: torch.tensor(v, device=x.device) for k, v in controls.items()},
        }
        return ModelOutput(recon=self.decode(mixed_a), posterior=q_a, z=mixed_a, extras=extras)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` operations ``[n, 9]`` decoded by argmax from prior draws of the ``sample_from`` branch(es)."""
        device = self.decoder_a.out.weight.device
        z = torch.randn(n, self.latent_dim, generator=generator, device=device)
        if self.config.sample_from == "a":
            return self.decode(z).argmax(dim=-1)
        if self.config.sample_from == "b":
            return self.decode_b(z).argmax(dim=-1)
        half = (n + 1) // 2
        return torch.cat([self.decode(z[:half]).argmax(dim=-1), self.decode_b(z[half:]).argmax(dim=-1)])

    # -- controls -------------------------------------------------------------------

    def _epoch(self) -> float:
        """Fractional epochs trained, from a Python mirror of ``examples_seen`` (read once after a load)."""
        if self._seen is None:
            self._seen = float(self.examples_seen)
        return self._seen / self.num_train

    @torch.no_grad()
    def _advance(self, batch_size: int) -> dict[str, float]:
        """One training step: fold in the last gradient norms, move the clock, set rho; return the controls."""
        self._update_grad_norms()
        epoch = self._epoch()
        phase, target = rho_target(self.config.rho, epoch)
        if phase == "resonance":
            g_a, g_b = self.grad_norms.unbind()
            ratio = g_a / g_b.clamp_min(1e-12)
            gate = self.config.rho.gate_ratio
            open_ = (ratio <= gate) & (ratio >= 1.0 / gate)
            self.rho.copy_(torch.where(open_, torch.full_like(self.rho, target), self.rho))
        else:
            self.rho.fill_(target)
        if self.config.temperature:
            tau_a, tau_b = temperatures(self.config.temperatures, epoch, exploring=phase == "exploration")
        else:
            tau_a = tau_b = 1.0
        self._seen += batch_size
        self.examples_seen.fill_(self._seen)
        return {"tau_a": tau_a, "tau_b": tau_b, "epoch": epoch}

    def _accumulate_grad(self, index: int, parameter: nn.Parameter) -> None:
        """Backward hook: add a parameter's squared gradient norm to its branch's total."""
        self.grad_sq[index] += parameter.grad.detach().pow(2).sum()

    def _update_grad_norms(self) -> None:
        """Fold the gradient norms of the last backward into the moving averages (skipped if none or non-finite)."""
        current = self.grad_sq.sqrt()
        valid = (current > 0).all() & torch.isfinite(current).all()
        first = self.grad_norms.sum() == 0
        decay = self.config.grad_ema_decay
        averaged = torch.where(first, current, decay * self.grad_norms + (1.0 - decay) * current)
        self.grad_norms.copy_(torch.where(valid, averaged, self.grad_norms))
        self.grad_sq.zero_()
