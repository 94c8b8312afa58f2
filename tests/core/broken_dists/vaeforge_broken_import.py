"""A plugin whose import fails: it needs a library that is not installed."""

import vaeforge_missing_dependency  # noqa: F401

from vaeforge import hookimpl


@hookimpl
def register_losses(register):
    register("never_loss", object)
