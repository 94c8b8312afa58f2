"""vaeforge-hyperbolic: a Poincaré-ball latent, a ``poincare_vae`` model and Riemannian optimizers.

Models in other plugins use the latent through :mod:`vaeforge_hyperbolic.latent`
(:class:`~vaeforge_hyperbolic.latent.PoincareLatent`,
:class:`~vaeforge_hyperbolic.latent.WrappedNormal`). Importing this package
is cheap: it imports neither torch nor geoopt.
"""
