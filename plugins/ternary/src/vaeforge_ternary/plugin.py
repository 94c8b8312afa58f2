"""The vaeforge-ternary plugin: wiring only.

Components live in their own modules and are imported inside the hooks, so
importing this module does not import torch.
"""

from __future__ import annotations

from pathlib import Path

from vaeforge import hookimpl

PRESETS = Path(__file__).parent / "presets"


@hookimpl
def register_data_sources(register):
    from vaeforge_ternary.data import TernaryOps, TernaryOpsConfig

    register("ternary_ops", TernaryOps, config=TernaryOpsConfig)


@hookimpl
def register_models(register):
    from vaeforge_ternary.models.ternary_dual_vae import TernaryDualVAE, TernaryDualVAEConfig
    from vaeforge_ternary.models.ternary_vae import TernaryVAE, TernaryVAEConfig

    register("ternary_vae", TernaryVAE, config=TernaryVAEConfig)
    register("ternary_dual_vae", TernaryDualVAE, config=TernaryDualVAEConfig)


@hookimpl
def register_losses(register):
    from vaeforge_ternary.dual_loss import TernaryDualLoss, TernaryDualLossConfig
    from vaeforge_ternary.padic_ranking import PadicRanking, PadicRankingConfig

    register("ternary_dual", TernaryDualLoss, config=TernaryDualLossConfig)
    register("padic_ranking", PadicRanking, config=PadicRankingConfig)


@hookimpl
def register_metrics(register):
    from vaeforge_ternary.metrics import CoverageConfig, TernaryCoverage

    register("ternary_coverage", TernaryCoverage, config=CoverageConfig)


@hookimpl
def register_callbacks(register):
    from vaeforge_ternary.callbacks import CoveragePlateau, CoveragePlateauConfig

    register("coverage_plateau", CoveragePlateau, config=CoveragePlateauConfig)


@hookimpl
def register_presets(register):
    register("ternary", PRESETS / "ternary.yaml")
    register("ternary-dual", PRESETS / "ternary-dual.yaml")
    register("ternary-hyperbolic", PRESETS / "ternary-hyperbolic.yaml")
