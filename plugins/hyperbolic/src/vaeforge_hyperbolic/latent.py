"""A Poincaré-ball latent space: the wrapped normal posterior and the head that produces it.

Conventions (curvature ``-c``, ball of radius ``1 / sqrt(c)``, metric
``lambda_x^2 I`` with ``lambda_x = 2 / (1 - c |x|^2)``, as in geoopt):

- Tangent vectors handed to or returned by this module are in an
  *orthonormal frame at the origin*: a vector ``v`` has Riemannian length
  ``|v|`` and ``exp0(v)`` lies at geodesic distance ``|v|`` from the origin.
  geoopt's ambient tangent coordinates at the origin are ``v / 2``, because
  ``lambda_0 = 2`` for every curvature.
- The wrapped normal ``WN(mu, sigma)`` is the law of
  ``exp_mu(PT_{0 -> mu}(v))`` with ``v ~ N(0, diag(sigma^2))`` in that frame
  (Nagano et al. 2019; Mathieu et al. 2019). Its density with respect to the
  Riemannian volume of the ball is

      log p(z) = log N(v; 0, sigma^2) - (d - 1) log(sinh(sqrt(c) r) / (sqrt(c) r)),

  where ``v = PT_{mu -> 0}(log_mu(z))`` and ``r = |v| = d(mu, z)``.
- The prior is ``WN(0, 1)``; under it :func:`log0` of a sample is exactly a
  standard normal vector.
- Ball points are computed in float64 (:data:`GEOMETRY_DTYPE`), whatever the
  model's dtype: in float32 geoopt keeps points at least ``4e-3`` from the
  boundary, which caps distances from the origin at ``6.2 / sqrt(c)``, short of
  a 16-dimensional standard prior's tail. In float64 points are kept
  :data:`BOUNDARY_EPS` inside, which allows distances up to ``16.8 / sqrt(c)``.

geoopt is imported on first use, never when this module is imported.
"""

from __future__ import annotations

import math
from types import ModuleType

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vaeforge_hyperbolic._geoopt import load_geoopt

GEOMETRY_DTYPE = torch.float64
"""The dtype ball points and their densities are computed in."""

BOUNDARY_EPS = 1e-7
"""Points are projected to at most ``(1 - BOUNDARY_EPS) / sqrt(c)`` from the centre."""

ORIGIN_CONFORMAL_FACTOR = 2.0
"""``lambda_0``: converts geoopt's ambient tangent coordinates at the origin to an orthonormal frame."""

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_SERIES_BELOW = 0.1


def _stereographic() -> ModuleType:
    return load_geoopt().manifolds.stereographic.math


def _k(curvature: float, like: Tensor) -> Tensor:
    return torch.tensor(-curvature, dtype=like.dtype, device=like.device)


def check_curvature(curvature: float) -> float:
    """Return ``curvature`` as a float, or raise ``ValueError`` unless it is finite and > 0."""
    curvature = float(curvature)
    if not (curvature > 0.0 and math.isfinite(curvature)):
        raise ValueError(f"curvature must be a finite number > 0, got {curvature!r}")
    return curvature


def project(z: Tensor, curvature: float) -> Tensor:
    """Pull points back to at most ``(1 - BOUNDARY_EPS) / sqrt(c)`` from the centre."""
    return _stereographic().project(z, k=_k(curvature, z), eps=BOUNDARY_EPS)


def exp0(v: Tensor, curvature: float) -> Tensor:
    """Ball points at geodesic distance ``|v|`` from the origin in direction ``v`` (orthonormal frame)."""
    z = _stereographic().expmap0(v / ORIGIN_CONFORMAL_FACTOR, k=_k(curvature, v))
    return project(z, curvature)


def log0(z: Tensor, curvature: float) -> Tensor:
    """Inverse of :func:`exp0`: the orthonormal tangent vector at the origin that reaches ``z``."""
    return ORIGIN_CONFORMAL_FACTOR * _stereographic().logmap0(z, k=_k(curvature, z))


def log_sinhc(x: Tensor) -> Tensor:
    """``log(sinh(x) / x)`` for ``x >= 0``, accurate and with finite gradients everywhere (0 at 0)."""
    small = x.clamp(max=_SERIES_BELOW)
    x2 = small * small
    series = x2 / 6.0 - x2 * x2 / 180.0 + x2 * x2 * x2 / 2835.0
    large = x.clamp(min=_SERIES_BELOW)
    exact = large + torch.log1p(-torch.exp(-2.0 * large)) - torch.log(2.0 * large)
    return torch.where(x < _SERIES_BELOW, series, exact)


class WrappedNormal:
    """A wrapped normal distribution on a Poincaré ball, with diagonal scale.

    Interchangeable with :class:`vaeforge.distributions.DiagonalGaussian`:
    ``sample()``, ``mode()`` and ``kl(prior=None)`` (one value per example).
    ``mean`` and ``scale`` are converted to :data:`GEOMETRY_DTYPE`; samples
    are returned in it too.

    Parameters:
        mean (`Tensor`): ``[batch, latent]`` points inside the ball.
        scale (`Tensor`): positive standard deviations in the orthonormal
            tangent frame, broadcastable to ``mean``.
        curvature (`float`, *optional*, defaults to 1.0): ``c > 0``; the ball has curvature ``-c``.
    """

    def __init__(self, mean: Tensor, scale: Tensor, curvature: float = 1.0):
        self.curvature = check_curvature(curvature)
        self.mean = mean.to(GEOMETRY_DTYPE)
        self.scale = scale.to(GEOMETRY_DTYPE).expand_as(self.mean)
        self._last: tuple[Tensor, Tensor] | None = None

    @classmethod
    def standard(cls, shape: tuple[int, ...], curvature: float = 1.0, *,
                 device: torch.device | str | None = None) -> WrappedNormal:
        """The prior ``WN(0, 1)`` with a ``[batch, latent]`` ``shape``."""
        mean = torch.zeros(shape, dtype=GEOMETRY_DTYPE, device=device)
        return cls(mean, torch.ones_like(mean), curvature)

    def sample(self, temperature: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``exp_mu(PT_{0->mu}(temperature * scale * eps))`` (reparameterised, differentiable).

        A draw at ``temperature == 1`` is remembered for :meth:`kl`.
        """
        eps = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        v = temperature * self.scale * eps
        z = self.exp(v)
        if temperature == 1.0:
            self._last = (v, z)
        return z

    def mode(self) -> Tensor:
        """The mean ``mu`` (where the density peaks)."""
        return self.mean

    def exp(self, v: Tensor) -> Tensor:
        """Map tangent vectors ``v`` at the origin (orthonormal frame) onto the ball around ``mu``."""
        stereographic, k = _stereographic(), _k(self.curvature, self.mean)
        u = stereographic.parallel_transport0(self.mean, v / ORIGIN_CONFORMAL_FACTOR, k=k)
        return project(stereographic.expmap(self.mean, u, k=k), self.curvature)

    def log(self, z: Tensor) -> Tensor:
        """Inverse of :meth:`exp`: the orthonormal tangent vector at the origin that reaches ``z``."""
        stereographic, k = _stereographic(), _k(self.curvature, self.mean)
        u = stereographic.logmap(self.mean, z.to(GEOMETRY_DTYPE), k=k)
        return ORIGIN_CONFORMAL_FACTOR * stereographic.parallel_transport0back(self.mean, u, k=k)

    def log_prob(self, z: Tensor) -> Tensor:
        """``log q(z)`` per example (summed over latent dimensions), w.r.t. the ball's Riemannian volume."""
        return self._log_prob_tangent(self.log(z))

    def kl(self, prior: WrappedNormal | None = None) -> Tensor:
        """Monte Carlo ``KL(q || prior)`` per example: ``log q(z) - log prior(z)`` at one draw ``z ~ q``.

        Uses the last draw of :meth:`sample` at temperature 1 (so the
        reconstruction and the KL share a sample), drawing one if there is
        none. The prior defaults to ``WN(0, 1)`` on the same ball. The
        estimate is unbiased but noisy, and can be negative for one draw; it
        is exactly 0 when ``prior`` is this distribution.
        """
        if self._last is None:
            self.sample()
        v, z = self._last
        log_q = self._log_prob_tangent(v)
        if prior is None:
            log_p = _log_prob_at_distance(self._distance_from_origin(v), v.shape[-1], self.curvature)
        else:
            log_p = prior.log_prob(z)
        return log_q - log_p

    def _log_prob_tangent(self, v: Tensor) -> Tensor:
        normal = -0.5 * (v / self.scale).pow(2) - self.scale.log() - _LOG_SQRT_2PI
        return normal.sum(dim=-1) - log_volume_change(v.norm(dim=-1), v.shape[-1], self.curvature)

    def _distance_from_origin(self, v: Tensor) -> Tensor:
        """``d(0, exp(v))`` by the hyperbolic law of cosines in the triangle (0, mu, exp(v)).

        Exact even where :meth:`exp` had to pull the point back inside the
        representable ball, so the prior term of :meth:`kl` never rewards
        posteriors that reach past it.
        """
        sqrt_c = math.sqrt(self.curvature)
        mean_norm, v_norm = self.mean.norm(dim=-1), v.norm(dim=-1)
        a = 2.0 * torch.atanh((sqrt_c * mean_norm).clamp(max=1.0 - BOUNDARY_EPS))  # sqrt(c) d(0, mu)
        b = sqrt_c * v_norm  # sqrt(c) d(mu, z)
        cos = (v * self.mean).sum(dim=-1) / (mean_norm * v_norm).clamp_min(1e-30)
        # cosh a cosh b + sinh a sinh b cos, written so that it stays accurate near 1
        x = 0.5 * (torch.cosh(a + b) * (1.0 + cos) + torch.cosh(a - b) * (1.0 - cos))
        return torch.acosh(x.clamp_min(1.0 + 1e-15)) / sqrt_c


def log_volume_change(radius: Tensor, dim: int, curvature: float) -> Tensor:
    """``(d - 1) log(sinh(sqrt(c) r) / (sqrt(c) r))``: how the exponential map stretches volume at distance ``r``."""
    return (dim - 1) * log_sinhc(math.sqrt(curvature) * radius)


def standard_log_prob(z: Tensor, curvature: float) -> Tensor:
    """``log p(z)`` under the prior ``WN(0, 1)``, per example (Riemannian volume)."""
    return _log_prob_at_distance(log0(z.to(GEOMETRY_DTYPE), curvature).norm(dim=-1), z.shape[-1], curvature)


def _log_prob_at_distance(radius: Tensor, dim: int, curvature: float) -> Tensor:
    """The prior ``WN(0, 1)`` depends on a point only through its distance from the origin."""
    return -0.5 * radius.pow(2) - dim * _LOG_SQRT_2PI - log_volume_change(radius, dim, curvature)


class PoincareLatent(nn.Module):
    """A latent head: encoder features in, a :class:`WrappedNormal` posterior on a Poincaré ball out.

    A model uses it as ``posterior = head(features)``, ``z = posterior.sample()``,
    ``decoder(head.to_decoder(z))``, and draws from the prior with
    ``head.sample_prior(n)``. It owns two linear layers and no manifold
    parameters, so any optimizer trains it.

    Parameters:
        in_features (`int`): size of the encoder features.
        latent_dim (`int`): dimension of the ball.
        curvature (`float`, *optional*, defaults to 1.0): ``c > 0``; the ball has curvature ``-c``.
        min_scale (`float`, *optional*, defaults to 1e-3): floor added to the softplus scale.
    """

    def __init__(self, in_features: int, latent_dim: int, curvature: float = 1.0, min_scale: float = 1e-3):
        super().__init__()
        if min_scale < 0.0:
            raise ValueError(f"min_scale must be >= 0, got {min_scale!r}")
        self.latent_dim = latent_dim
        self.curvature = check_curvature(curvature)
        self.min_scale = min_scale
        self.mean = nn.Linear(in_features, latent_dim)
        self.scale = nn.Linear(in_features, latent_dim)

    def forward(self, features: Tensor) -> WrappedNormal:
        """The posterior: ``mu = exp0(mean(features))``, ``sigma = softplus(scale(features)) + min_scale``."""
        mean = exp0(self.mean(features).to(GEOMETRY_DTYPE), self.curvature)
        scale = F.softplus(self.scale(features).to(GEOMETRY_DTYPE)) + self.min_scale
        return WrappedNormal(mean, scale, self.curvature)

    def prior(self, n: int) -> WrappedNormal:
        """``WN(0, 1)`` for ``n`` examples, on this head's device."""
        return WrappedNormal.standard((n, self.latent_dim), self.curvature, device=self.mean.weight.device)

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` ball points drawn from the prior."""
        return self.prior(n).sample(generator=generator)

    def to_decoder(self, z: Tensor) -> Tensor:
        """Decoder input for ball points: :func:`log0` in the head's dtype (N(0, I) under the prior)."""
        return log0(z.to(GEOMETRY_DTYPE), self.curvature).to(self.mean.weight.dtype)

    def extra_repr(self) -> str:
        return f"curvature={self.curvature}, min_scale={self.min_scale}"
