"""Wires the template's components into vaeforge; nothing else lives here.

vaeforge imports this module for every command (``vaeforge --help``
included), so it imports only :mod:`vaeforge`. Component modules are imported
inside the hooks, and heavy libraries inside the components themselves.
"""

from __future__ import annotations

from vaeforge import hookimpl


@hookimpl
def register_losses(register):
    from vaeforge_template.l1_recon import L1Recon, L1ReconConfig

    register("template_l1", L1Recon, config=L1ReconConfig)
