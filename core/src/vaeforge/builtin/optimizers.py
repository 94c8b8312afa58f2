"""Every ``torch.optim`` optimizer by its lower-case name, with a strict config made from its signature.

``adam``, ``adamw``, ``sgd``, ``rmsprop``, ... each get an attrs config class
whose fields are the optimizer's keyword arguments with torch's defaults, so
a misspelled key is an error with a did-you-mean and a negative learning rate
is refused before any training starts.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

import attrs
import torch

_NON_NEGATIVE = {"lr", "weight_decay", "eps", "momentum", "dampening", "alpha", "lr_decay", "rho", "lambd"}
_SKIP = {"params", "self", "foreach", "capturable", "differentiable", "fused", "maximize"}


_UNSUITED = {"LBFGS", "SparseAdam"}
"""Optimizers a plain training step cannot drive: LBFGS needs a closure, SparseAdam sparse gradients."""


def torch_optimizers() -> dict[str, type[torch.optim.Optimizer]]:
    """``{lower-case name: class}`` for every optimizer ``torch.optim`` exports that a step can drive."""
    found = {}
    for name in dir(torch.optim):
        obj = getattr(torch.optim, name)
        if name in _UNSUITED:
            continue
        if inspect.isclass(obj) and issubclass(obj, torch.optim.Optimizer) and obj is not torch.optim.Optimizer:
            found[name.lower()] = obj
    return found


def _field_type(default: Any) -> Any:
    if isinstance(default, bool):
        return bool
    if isinstance(default, (int, float)):
        return float
    if isinstance(default, tuple):
        return tuple[tuple(_field_type(item) for item in default)]  # type: ignore[misc]
    return Any


def config_class(optimizer: type[torch.optim.Optimizer]) -> type:
    """An attrs config class mirroring the optimizer's keyword arguments and defaults."""
    fields = {}
    for name, parameter in inspect.signature(optimizer.__init__).parameters.items():
        if name in _SKIP or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        default = parameter.default
        if default is inspect.Parameter.empty:
            default = 1e-3 if name == "lr" else attrs.NOTHING
        validator = attrs.validators.ge(0.0) if name in _NON_NEGATIVE and isinstance(default, (int, float)) else None
        fields[name] = attrs.field(default=default, type=_field_type(default), validator=validator)
    cls = attrs.make_class(f"{optimizer.__name__}Config", fields, frozen=True, kw_only=True)
    cls.__doc__ = f"Keyword arguments of ``torch.optim.{optimizer.__name__}`` (same names and defaults)."
    return cls


def optimizer_factory(optimizer: type[torch.optim.Optimizer]) -> Callable[[Iterable[Any], Any], torch.optim.Optimizer]:
    """A registry factory ``(params, config) -> optimizer`` for a torch optimizer class."""

    def build(params: Iterable[Any], config: Any) -> torch.optim.Optimizer:
        return optimizer(params, **attrs.asdict(config, recurse=False))

    build.__doc__ = optimizer.__doc__
    return build
