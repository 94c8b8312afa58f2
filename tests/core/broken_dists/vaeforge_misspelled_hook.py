"""A plugin whose hookimpl name matches no hookspec (``register_loss`` for ``register_losses``)."""

from vaeforge import hookimpl


@hookimpl
def register_loss(register):
    register("misspelled_loss", object)
