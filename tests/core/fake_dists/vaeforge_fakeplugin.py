"""A well-behaved plugin found only through the entry point in ``vaeforge_fakeplugin-1.2.3.dist-info``.

It adds one loss with a config class, one callback whose factory is a lazy
``"module:attr"`` string (its module must stay unimported until the callback
is built), one preset given as a mapping and one subcommand.
"""

from __future__ import annotations

from attrs import field, frozen
from attrs.validators import ge

from vaeforge import hookimpl


@frozen(kw_only=True)
class ScaledL1Config:
    """Settings of the ``fake_l1`` loss.

    :param scale: multiplier on the mean absolute error.
    """

    scale: float = field(default=1.0, validator=ge(0.0))


class ScaledL1:
    """Mean absolute reconstruction error, scaled."""

    def __init__(self, config: ScaledL1Config):
        self.config = config

    def __call__(self, out, batch, ctx):
        return self.config.scale * (out.recon - batch["x"]).abs().mean()


@hookimpl
def register_losses(register):
    register("fake_l1", ScaledL1, config=ScaledL1Config)


@hookimpl
def register_callbacks(register):
    register("fake_heavy", "vaeforge_fakeplugin_heavy:HeavyCallback")


@hookimpl
def register_presets(register):
    register("fake-tiny", {
        "name": "fake-tiny",
        "data": {"name": "synthetic", "params": {"num_examples": 64, "dim": 4}},
        "model": {"name": "mlp_vae", "params": {"latent_dim": 2, "hidden": [8]}},
        "losses": [{"name": "fake_l1", "params": {"scale": 2.0}}, {"name": "kl"}],
    })


@hookimpl
def register_commands(cli):
    parser = cli.add_command("fake-hello", lambda args: print(f"hello {args.who}") or 0, help="say hello")
    parser.add_argument("who")
