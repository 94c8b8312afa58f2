"""The contracts between the trainer and the components plugins contribute.

Everything here is public API: plugins (first-party and third-party alike)
build on these types and on nothing private.

- :class:`ModelOutput`, :class:`VAEModel`: what a model returns and offers.
- :class:`LossTerm`, :class:`AuxiliaryLoss`: how a loss term is called.
- :class:`Context`, :class:`MetricSink`: what a component sees of the run.
- :class:`DataInfo`, :class:`DataSplits`, :class:`DataSource`: data.
- :class:`Callback`, :class:`Logger`, :class:`Metric`: the rest of the run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from vaeforge.trainer.loop import Trainer


# -- Models ---------------------------------------------------------------------------


@dataclasses.dataclass
class ModelOutput:
    """What ``model(batch)`` returns.

    Parameters:
        recon (`Tensor`): decoder output parameters for the reconstruction
            (logits for Bernoulli and categorical likelihoods, means for Gaussian).
        posterior (`Posterior`): q(z | x); has ``sample()``, ``mode()`` and ``kl(prior=None)``.
        z (`Tensor`): the latent sample the decoder was given.
        extras (`dict`, *optional*): model-specific tensors, e.g. a dual VAE's second branch.
    """

    recon: Tensor
    posterior: Any
    z: Tensor
    extras: dict[str, Any] = dataclasses.field(default_factory=dict)


@runtime_checkable
class VAEModel(Protocol):
    """The model contract (an ``nn.Module`` with these methods).

    - ``forward(batch) -> ModelOutput``: ``batch`` is a mapping with at least ``"x"``.
    - ``encode(x) -> posterior``.
    - ``decode(z) -> Tensor``: decoder output parameters.
    - ``sample(n, generator=None) -> Tensor``: ``n`` samples from the prior, decoded
      to data space (argmax, mean or Bernoulli draw, as the likelihood says).
    """

    def encode(self, x: Tensor) -> Any: ...

    def decode(self, z: Tensor) -> Tensor: ...

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor: ...


# -- Loss terms -----------------------------------------------------------------------


@runtime_checkable
class LossTerm(Protocol):
    """A loss term: ``term(out, batch, ctx) -> Tensor | Mapping[str, Tensor]``.

    Return a scalar tensor, or a mapping of named scalar tensors that are
    summed (each logged as ``<split>/<term>/<key>``). The trainer multiplies
    the result by the term's weight (a constant or a schedule) and logs the
    unweighted value as ``<split>/<term>``. Reduce over data dimensions by
    sum and over the batch by mean, so terms are per-example quantities.
    """

    def __call__(
        self, out: ModelOutput, batch: Mapping[str, Tensor], ctx: Context
    ) -> Tensor | Mapping[str, Tensor]: ...


@runtime_checkable
class AuxiliaryLoss(Protocol):
    """A loss term that owns parameters and updates them itself (e.g. a GAN discriminator).

    The trainer moves the term to the device, calls ``auxiliary_step`` after
    every successful main optimizer step (with the same model output, detached
    as the term needs), and checkpoints ``state_dict()`` (which must include
    its optimizer's state) without knowing what the term is.
    """

    def auxiliary_step(self, out: ModelOutput, batch: Mapping[str, Tensor], ctx: Context) -> Mapping[str, Tensor]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


@dataclasses.dataclass
class LossResult:
    """The composed objective of one step.

    Parameters:
        total (`Tensor`): the weighted sum that is back-propagated.
        terms (`dict[str, Tensor]`): each term's unweighted value (and named sub-terms).
    """

    total: Tensor
    terms: dict[str, Tensor]


# -- What components see of the run ------------------------------------------------------


class MetricSink:
    """Accumulates metrics on the device; converts to floats only when asked.

    ``log(name, value)`` adds a tensor or float to a running mean without any
    host synchronisation; :meth:`compute` returns the means as floats with one
    transfer, and :meth:`reset` starts over.
    """

    def __init__(self) -> None:
        self._sums: dict[str, Tensor | float] = {}
        self._counts: dict[str, int] = {}
        self._stacked: dict[tuple[str, ...], Tensor] = {}
        self._stacked_counts: dict[tuple[str, ...], int] = {}

    def log(self, name: str, value: Tensor | float) -> None:
        """Add one observation of ``name`` (a scalar tensor or a number)."""
        if isinstance(value, Tensor):
            value = value.detach()
            if value.dtype != torch.float32:
                value = value.float()
        previous = self._sums.get(name)
        self._sums[name] = value if previous is None else previous + value
        self._counts[name] = self._counts.get(name, 0) + 1

    def log_many(self, names: list[str], values: Tensor) -> None:
        """Add one observation for each name from a 1-D tensor (one device op for all)."""
        self.log_rows(names, values.reshape(1, -1))

    def log_rows(self, names: list[str], rows: Tensor) -> None:
        """Add ``rows.shape[0]`` observations for each name from a 2-D tensor, one row per observation."""
        key = tuple(names)
        total = rows.detach().sum(dim=0)
        previous = self._stacked.get(key)
        self._stacked[key] = total if previous is None else previous + total
        self._stacked_counts[key] = self._stacked_counts.get(key, 0) + rows.shape[0]

    def compute(self) -> dict[str, float]:
        """Means of everything logged since the last reset, as floats (one device transfer).

        A name logged both alone and in vectors, or in vectors of different
        name lists, gets the mean over all its observations.
        """
        tensor_names = [n for n, v in self._sums.items() if isinstance(v, Tensor)]
        parts = [self._sums[n].reshape(1) for n in tensor_names] + list(self._stacked.values())
        host = iter(torch.cat(parts).cpu().tolist()) if parts else iter(())
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}

        def add(name: str, total: float, count: int) -> None:
            sums[name] = sums.get(name, 0.0) + total
            counts[name] = counts.get(name, 0) + count

        for n in tensor_names:
            add(n, next(host), self._counts[n])
        for n, value in self._sums.items():
            if not isinstance(value, Tensor):
                add(n, float(value), self._counts[n])
        for key, count in self._stacked_counts.items():
            for n in key:
                add(n, next(host), count)
        return {n: sums[n] / counts[n] for n in sums}

    def reset(self) -> None:
        """Forget everything logged."""
        self._sums.clear()
        self._counts.clear()
        self._stacked.clear()
        self._stacked_counts.clear()

    def __bool__(self) -> bool:
        return bool(self._sums or self._stacked)

    def state_dict(self) -> dict[str, Any]:
        """The running sums and counts (so a mid-interval checkpoint resumes exactly)."""
        return {
            "sums": dict(self._sums),
            "counts": dict(self._counts),
            "stacked": [
                {"names": list(k), "sum": v, "count": self._stacked_counts[k]} for k, v in self._stacked.items()
            ],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        self._sums = dict(state["sums"])
        self._counts = {k: int(v) for k, v in state["counts"].items()}
        self._stacked = {tuple(e["names"]): e["sum"] for e in state["stacked"]}
        self._stacked_counts = {tuple(e["names"]): int(e["count"]) for e in state["stacked"]}


@dataclasses.dataclass
class Context:
    """The run as components see it, updated by the trainer before every step.

    Parameters:
        step (`int`): optimizer steps completed so far in the run (all stages).
        epoch (`int`): the current epoch within the stage, from 0.
        batch_index (`int`): the batch within the epoch, from 0.
        stage (`str`): the current stage (``"main"`` without a pipeline).
        steps_per_epoch (`int | None`): batches per epoch, None for endless streams.
        split (`str`): ``"train"`` or ``"val"``.
        weights (`dict[str, float]`): each loss term's current weight; a controller may
            write to ``weight_scales`` to scale them.
        weight_scales (`dict[str, float]`): multipliers controllers set per loss term.
        values (`dict[str, Any]`): named scalars (or short strings) components publish for
            others and for the progress bar (rho, tau, patience, ...).
        metrics (`MetricSink`): where components log extra metrics (``ctx.log``).
        optimizer (`torch.optim.Optimizer | None`): the current optimizer (controllers may adjust it).
    """

    step: int = 0
    epoch: int = 0
    batch_index: int = 0
    stage: str = "main"
    steps_per_epoch: int | None = None
    split: str = "train"
    weights: dict[str, float] = dataclasses.field(default_factory=dict)
    weight_scales: dict[str, float] = dataclasses.field(default_factory=dict)
    values: dict[str, Any] = dataclasses.field(default_factory=dict)
    metrics: MetricSink = dataclasses.field(default_factory=MetricSink)
    optimizer: torch.optim.Optimizer | None = None

    @property
    def training(self) -> bool:
        """True during a training step, False during validation."""
        return self.split == "train"

    def log(self, name: str, value: Tensor | float) -> None:
        """Log an extra metric under ``<split>/<name>`` (no host sync)."""
        self.metrics.log(f"{self.split}/{name}", value)


# -- Data -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DataInfo:
    """What a model needs to know about the data to size itself.

    Parameters:
        shape (`tuple[int, ...]`): the shape of one example's ``x``.
        kind (`str`): ``"binary"``, ``"continuous"`` or ``"categorical"``.
        num_classes (`int | None`): values per position for categorical data.
        num_train (`int | None`): training examples, None for streams.
    """

    shape: tuple[int, ...]
    kind: str = "continuous"
    num_classes: int | None = None
    num_train: int | None = None


@dataclasses.dataclass
class DataSplits:
    """A data source's output.

    ``train`` and ``val`` are each a mapping of equally long tensors (the fast
    path: batches are indexed on the device), a map-style
    ``torch.utils.data.Dataset`` whose items are mappings, or an
    ``IterableDataset`` (a stream; needs ``trainer.max_steps`` if endless).
    ``val`` may be None.
    """

    train: Any
    val: Any
    info: DataInfo


@runtime_checkable
class DataSource(Protocol):
    """A registered data source: ``load() -> DataSplits``."""

    def load(self) -> DataSplits: ...


# -- Callbacks, loggers, metrics -----------------------------------------------------------


class Callback:
    """Base class for callbacks and controllers; override the events you need.

    Events receive the :class:`~vaeforge.trainer.loop.Trainer`, whose
    ``ctx``, ``model``, ``optimizer`` and ``metrics`` (the last logged values)
    they may read. ``on_batch_end`` runs on the hot path: keep it free of host
    syncs. A callback with state overrides ``state_dict`` / ``load_state_dict``;
    the trainer checkpoints it under its position in the config.
    """

    def on_fit_start(self, trainer: Trainer) -> None:
        """Before the first step (also after a resume)."""

    def on_fit_end(self, trainer: Trainer) -> None:
        """After the last step, when the run ends normally or stops early."""

    def on_stage_start(self, trainer: Trainer, stage: str) -> None:
        """When a stage begins (``"main"`` without a pipeline)."""

    def on_stage_end(self, trainer: Trainer, stage: str) -> None:
        """When a stage ends."""

    def on_epoch_start(self, trainer: Trainer) -> None:
        """Before the first batch of an epoch."""

    def on_batch_end(self, trainer: Trainer, result: LossResult) -> None:
        """After each training step (skipped steps included)."""

    def on_epoch_end(self, trainer: Trainer, metrics: Mapping[str, float]) -> None:
        """After an epoch and its validation, with the epoch's metrics."""

    def on_validation_end(self, trainer: Trainer, metrics: Mapping[str, float]) -> None:
        """After each validation pass, with its ``val/`` metrics."""

    def should_stop(self, trainer: Trainer) -> bool:
        """Return True to end the current stage (checked after each epoch)."""
        return False

    def state_dict(self) -> dict[str, Any]:
        """State to checkpoint: tensors, numbers, strings, lists and dicts only."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""


class Logger:
    """Base class for metric sinks; override what your backend supports.

    A logger that raises is switched off with one warning; training goes on.
    """

    def log_hparams(self, config: Mapping[str, Any]) -> None:
        """The fully resolved run config, once at the start."""

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Scalar metrics at an optimizer step."""

    def log_histograms(self, tensors: Mapping[str, Tensor], step: int) -> None:
        """Tensors (weights, latents) to summarise as histograms."""

    def log_artifact(self, path: Path, name: str | None = None) -> None:
        """A file produced by the run (a plot, a sample grid)."""

    def close(self) -> None:
        """Flush and release resources; called once at the end."""


@runtime_checkable
class Metric(Protocol):
    """An evaluation metric: ``metric(model, data, ctx) -> Mapping[str, float]``.

    Called after each validation pass with the evaluation model (the EMA when
    enabled) in eval mode under ``torch.no_grad()``; results are logged under
    ``val/<name>``.
    """

    def __call__(self, model: nn.Module, data: DataSplits, ctx: Context) -> Mapping[str, float]: ...
