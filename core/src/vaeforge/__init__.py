"""vaeforge: train variational autoencoders from a YAML file; every feature is a plugin.

Importing this package is cheap (no torch): it exposes the hook markers.
The torch-side contracts live in :mod:`vaeforge.api`.
"""

from importlib import metadata

from vaeforge.hookspecs import hookimpl, hookspec

try:
    __version__ = metadata.version("vaeforge")
except metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

__all__ = ["__version__", "hookimpl", "hookspec"]
