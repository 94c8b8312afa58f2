"""``template_l1``: an absolute-error reconstruction term (a Laplace likelihood up to constants)."""

from __future__ import annotations

from collections.abc import Mapping

from attrs import field, frozen
from attrs.validators import ge
from torch import Tensor

from vaeforge.api import Context, ModelOutput


@frozen(kw_only=True)
class L1ReconConfig:
    """Settings of the ``template_l1`` loss term (its ``params:`` in a run file).

    :param scale: multiplier on the summed absolute error; 0 switches the term off.
    """

    scale: float = field(default=1.0, validator=ge(0.0))


class L1Recon:
    """Absolute error of the decoder output against ``x``: summed per example, averaged over the batch.

    Parameters:
        config (`L1ReconConfig`): the term's settings, structured from ``params:``.
    """

    def __init__(self, config: L1ReconConfig):
        self.config = config

    def __call__(self, out: ModelOutput, batch: Mapping[str, Tensor], ctx: Context) -> Tensor:
        target = batch["x"].to(out.recon.dtype)
        per_example = (out.recon - target).abs().reshape(target.shape[0], -1).sum(dim=1)
        return self.config.scale * per_example.mean()
