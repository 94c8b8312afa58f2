"""The core's built-in plugin: registered through the same hooks as any third-party plugin.

Only wiring lives here; each component is in its own module, imported when
the registry is built (never when this module is imported).
"""

from __future__ import annotations

from pathlib import Path

from vaeforge import hookimpl

PRESETS = Path(__file__).parent / "presets"


@hookimpl
def register_models(register):
    from vaeforge.builtin.models.mlp_vae import MLPVAE, MLPVAEConfig

    register("mlp_vae", MLPVAE, config=MLPVAEConfig)


@hookimpl
def register_losses(register):
    from vaeforge.builtin import losses

    register("bce_recon", losses.BCERecon)
    register("mse_recon", losses.MSERecon, config=losses.MSEReconConfig)
    register("categorical_recon", losses.CategoricalRecon)
    register("kl", losses.KLDivergence, config=losses.KLConfig)


@hookimpl
def register_schedules(register):
    from vaeforge.builtin import schedules

    register("constant", schedules.Constant, config=schedules.ConstantConfig)
    register("linear", schedules.Linear, config=schedules.RampConfig)
    register("cosine", schedules.Cosine, config=schedules.RampConfig)
    register("cyclic", schedules.Cyclic, config=schedules.CyclicConfig)


@hookimpl
def register_callbacks(register):
    from vaeforge.builtin.callbacks.checkpoint import Checkpoint, CheckpointConfig
    from vaeforge.builtin.callbacks.early_stopping import EarlyStopping, EarlyStoppingConfig
    from vaeforge.builtin.callbacks.lr_monitor import LRMonitor

    register("early_stopping", EarlyStopping, config=EarlyStoppingConfig)
    register("checkpoint", Checkpoint, config=CheckpointConfig)
    register("lr_monitor", LRMonitor)


@hookimpl
def register_data_sources(register):
    from vaeforge.builtin.data.digits import Digits, DigitsConfig
    from vaeforge.builtin.data.synthetic import Synthetic, SyntheticConfig
    from vaeforge.builtin.data.tensor_file import TensorFile, TensorFileConfig

    register("digits", Digits, config=DigitsConfig)
    register("synthetic", Synthetic, config=SyntheticConfig)
    register("tensor_file", TensorFile, config=TensorFileConfig)


@hookimpl
def register_loggers(register):
    from vaeforge.builtin.loggers.console import ConsoleConfig, ConsoleLogger
    from vaeforge.builtin.loggers.jsonl import JSONLConfig, JSONLLogger
    from vaeforge.builtin.loggers.plots import PlotsConfig, PlotsLogger

    register("console", ConsoleLogger, config=ConsoleConfig)
    register("jsonl", JSONLLogger, config=JSONLConfig)
    register("plots", PlotsLogger, config=PlotsConfig)


@hookimpl
def register_optimizers(register):
    from vaeforge.builtin.optimizers import config_class, optimizer_factory, torch_optimizers

    for name, optimizer in sorted(torch_optimizers().items()):
        register(name, optimizer_factory(optimizer), config=config_class(optimizer))


@hookimpl
def register_schedulers(register):
    from vaeforge.builtin import schedulers

    register("constant", schedulers.constant)
    register("step", schedulers.step, config=schedulers.StepConfig)
    register("warmup_cosine", schedulers.warmup_cosine, config=schedulers.WarmupCosineConfig)


@hookimpl
def register_presets(register):
    register("digits", PRESETS / "digits.yaml")
