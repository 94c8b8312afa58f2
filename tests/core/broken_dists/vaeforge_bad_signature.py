"""A plugin whose hookimpl asks for an argument the hookspec does not have."""

from vaeforge import hookimpl


@hookimpl
def register_losses(register, device):
    register("signature_loss", object)
