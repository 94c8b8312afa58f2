"""Numeric checks of a training step: is anything non-finite, and where."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class NonFiniteCheck:
    """Flags NaN or Inf in a step's loss values and gradients with one fused pass.

    The pass is the check ``GradScaler`` runs, with a unit scale, so every
    checked tensor keeps its values; it is far cheaper per step than a
    gradient norm. :attr:`flag` is a 0-d float32 tensor on ``device`` that
    becomes 1.0 once a checked tensor is non-finite and stays so until
    :meth:`reset`, so a clean step costs no op to clear it.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self._found = torch.zeros(1, device=device)
        self._unit = torch.ones(1, device=device)
        self.flag = self._found[0]
        self._grouped = False

    def __call__(self, tensors: list[Tensor]) -> Tensor:
        """Check ``tensors`` (gradients, loss values); returns :attr:`flag`."""
        if not self._grouped:
            try:  # the usual case, everything on this device: one call, no Python loop over the tensors
                torch._amp_foreach_non_finite_check_and_unscale_(tensors, self._found, self._unit)
                return self.flag
            except (RuntimeError, NotImplementedError):  # sparse or other-device tensors: group from now on
                self._grouped = True
        groups: dict[torch.device, list[Tensor]] = {}
        for tensor in tensors:
            if tensor.is_sparse:
                tensor = tensor.coalesce().values()
            groups.setdefault(tensor.device, []).append(tensor.detach())
        for device, group in groups.items():
            if device == self.device:
                torch._amp_foreach_non_finite_check_and_unscale_(group, self._found, self._unit)
            else:
                found = torch.zeros(1, device=device)
                torch._amp_foreach_non_finite_check_and_unscale_(group, found, torch.ones(1, device=device))
                torch.maximum(self._found, found.to(self.device), out=self._found)
        return self.flag

    def reset(self) -> None:
        """Clear the flag (after a step that was skipped)."""
        self._found.zero_()


def first_nonfinite_module(model: nn.Module) -> str | None:
    """The module owning the first parameter (in definition order) whose gradient is non-finite."""
    for name, parameter in model.named_parameters():
        if parameter.grad is not None and not torch.isfinite(parameter.grad).all():
            return name.rpartition(".")[0] or name
    return None


def first_nonfinite_parameter(model: nn.Module) -> str | None:
    """The first parameter holding a non-finite value, if any."""
    for name, parameter in model.named_parameters():
        if not torch.isfinite(parameter).all():
            return name
    return None
