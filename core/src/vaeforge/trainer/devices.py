"""Device choice and numeric precision."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from vaeforge.errors import ConfigError


def select_device(requested: str | None = None) -> torch.device:
    """``requested`` (CLI ``--device``), else ``VAEFORGE_DEVICE``, else CUDA, then MPS, then CPU.

    ``DISABLE_MPS=1`` skips MPS in the automatic choice.
    """
    name = requested or os.environ.get("VAEFORGE_DEVICE")
    if name:
        try:
            device = torch.device(name)
        except RuntimeError:
            raise ConfigError(f"device {name!r}: not a device name (try cpu, cuda, cuda:1 or mps)") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device {name!r}: CUDA is not available on this machine")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ConfigError(f"device {name!r}: MPS is not available on this machine")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if os.environ.get("DISABLE_MPS") != "1" and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


class Precision:
    """Autocast and gradient scaling for one of ``fp32``, ``bf16`` or ``fp16``.

    ``fp16`` needs CUDA and uses a ``GradScaler``; ``bf16`` autocasts on CPU and CUDA.
    """

    def __init__(self, name: str, device: torch.device):
        if name == "fp16" and device.type != "cuda":
            raise ConfigError(f"trainer.precision: fp16 needs a CUDA device (this run uses {device.type}); use bf16")
        self.name = name
        self.device = device
        self.scaler = torch.amp.GradScaler("cuda") if name == "fp16" else None

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """The autocast context for forward passes (a no-op for fp32)."""
        if self.name == "fp32":
            yield
            return
        dtype = torch.bfloat16 if self.name == "bf16" else torch.float16
        with torch.autocast(device_type=self.device.type, dtype=dtype):
            yield
