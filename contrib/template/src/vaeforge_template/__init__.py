"""vaeforge-template: the starting point for a vaeforge plugin.

Importing the package is cheap; components are imported by the hooks in
:mod:`vaeforge_template.plugin` when vaeforge builds its registry.
"""

__version__ = "0.1.0"
