"""A plugin that raises halfway through registering: ``flaky_loss`` is in, then it fails."""

from vaeforge import hookimpl


@hookimpl
def register_losses(register):
    register("flaky_loss", object)
    raise RuntimeError("the GPU driver is too old")


@hookimpl
def register_callbacks(register):
    register("flaky_callback", object)
