"""Stages of a run: what each stage trains, with what, for how long, and when it ends early.

A run without ``stages:`` is one stage named ``main`` built from the run's
own settings. In a pipeline each stage inherits the run's optimizer,
scheduler, losses and epochs unless it names its own. Frozen submodules carry
over from stage to stage until a later stage unfreezes them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import attrs
from torch import nn

from vaeforge.config import ComponentSpec, LossSpec, RunConfig, UntilConfig
from vaeforge.errors import ConfigError, did_you_mean

_STAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@attrs.frozen
class Stage:
    """One stage with every setting resolved.

    :param index: position in the pipeline, from 0.
    :param name: the stage name (``main`` without a pipeline).
    :param epochs: epochs of the stage, or None when only ``max_steps`` bounds it.
    :param max_steps: optimizer steps of the stage, or None.
    :param optimizer: the optimizer spec.
    :param scheduler: the scheduler spec, or None.
    :param losses: the loss terms.
    :param frozen: dotted names of the submodules frozen during this stage.
    :param until: the early-transition rule, or None.
    :param freeze: the names this stage's config lists under ``freeze`` (for error messages).
    :param unfreeze: the names this stage's config lists under ``unfreeze``.
    """

    index: int
    name: str
    epochs: int | None
    max_steps: int | None
    optimizer: ComponentSpec
    scheduler: ComponentSpec | None
    losses: list[LossSpec]
    frozen: tuple[str, ...]
    until: UntilConfig | None
    freeze: tuple[str, ...] = ()
    unfreeze: tuple[str, ...] = ()


def resolve_stages(config: RunConfig) -> list[Stage]:
    """The run's stages with inherited settings filled in (one ``main`` stage without a pipeline)."""
    trainer = config.trainer
    if not config.stages:
        return [Stage(0, "main", trainer.epochs, trainer.max_steps, config.optimizer, config.scheduler,
                      list(config.losses), (), None)]
    stages = []
    frozen: list[str] = []
    for index, spec in enumerate(config.stages):
        frozen = [name for name in frozen if name not in spec.unfreeze] + [n for n in spec.freeze if n not in frozen]
        epochs = spec.epochs if spec.epochs is not None or spec.max_steps is not None else trainer.epochs
        stages.append(
            Stage(
                index=index,
                name=spec.name,
                epochs=epochs,
                max_steps=spec.max_steps,
                optimizer=spec.optimizer or config.optimizer,
                scheduler=spec.scheduler if spec.scheduler is not None else config.scheduler,
                losses=list(spec.losses) if spec.losses is not None else list(config.losses),
                frozen=tuple(frozen),
                until=spec.until,
                freeze=tuple(spec.freeze),
                unfreeze=tuple(spec.unfreeze),
            )
        )
    errors = [f"$.stages[{s.index}].name: {s.name!r} cannot name a checkpoint folder; use letters, digits, "
              "'.', '_' and '-' (not 'best')" for s in stages if not _STAGE_NAME.fullmatch(s.name) or s.name == "best"]
    names = [s.name for s in stages]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        errors.append(f"$.stages: stage names must be unique; repeated: {', '.join(duplicates)}")
    if errors:
        raise ConfigError(errors)
    return stages


def check_module_names(stages: Sequence[Stage], model: nn.Module) -> None:
    """Every ``freeze`` / ``unfreeze`` name must be a submodule, and every stage must train something.

    Problems are reported together, each at the config path that names it.
    """
    modules = dict(model.named_modules())
    choices = [n for n in modules if n]
    top = ", ".join(n for n in choices if "." not in n)
    errors = []
    for stage in stages:
        for key, names in (("freeze", stage.freeze), ("unfreeze", stage.unfreeze)):
            for position, name in enumerate(names):
                if name not in modules or not name:
                    errors.append(f"$.stages[{stage.index}].{key}[{position}]: no submodule {name!r}"
                                  f"{did_you_mean(name, choices)} (top-level submodules: {top})")
    if errors:
        raise ConfigError(errors)
    for stage in stages:
        frozen = {id(p) for name in stage.frozen for p in modules[name].parameters()}
        if all(id(p) in frozen for p in model.parameters()):
            errors.append(f"$.stages[{stage.index}].freeze: stage {stage.name!r} freezes every parameter; "
                          "nothing would train")
    if errors:
        raise ConfigError(errors)


def apply_freeze(model: nn.Module, frozen: Sequence[str]) -> None:
    """Turn gradients off for the parameters under ``frozen`` and on for every other one."""
    modules = dict(model.named_modules())
    frozen_ids = {id(p) for name in frozen for p in modules[name].parameters()}
    for parameter in model.parameters():
        parameter.requires_grad_(id(parameter) not in frozen_ids)


def threshold_crossed(until: UntilConfig | None, metrics: Mapping[str, float], epochs_done: int) -> bool:
    """True when the stage's ``until`` rule says to move on after ``epochs_done`` epochs."""
    if until is None or epochs_done < until.min_epochs or until.metric not in metrics:
        return False
    value = metrics[until.metric]
    if until.below is not None:
        return value < until.below
    return until.above is not None and value > until.above
