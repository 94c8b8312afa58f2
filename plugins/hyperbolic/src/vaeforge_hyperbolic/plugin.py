"""vaeforge-hyperbolic: wires the Poincaré-ball model and the Riemannian optimizers into vaeforge.

Only hook implementations live here; component modules are imported inside
the hooks and geoopt inside the factories.
"""

from __future__ import annotations

from pathlib import Path

from vaeforge import hookimpl

PRESETS = Path(__file__).parent / "presets"


@hookimpl
def register_models(register):
    from vaeforge_hyperbolic.poincare_vae import PoincareVAE, PoincareVAEConfig

    register("poincare_vae", PoincareVAE, config=PoincareVAEConfig)


@hookimpl
def register_optimizers(register):
    from vaeforge_hyperbolic import optimizers

    register("riemannian_adam", optimizers.riemannian_adam, config=optimizers.RiemannianAdamConfig)
    register("riemannian_sgd", optimizers.riemannian_sgd, config=optimizers.RiemannianSGDConfig)


@hookimpl
def register_presets(register):
    register("poincare-digits", PRESETS / "poincare-digits.yaml")
