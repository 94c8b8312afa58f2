"""The training loop.

:class:`Trainer` runs the stages of a resolved :class:`~vaeforge.config.RunConfig`
in a run folder. One step is: forward under autocast, compose the losses,
backward, clip, one host sync to check that the loss and gradient norm are
finite, then optimizer, scheduler and EMA steps (all skipped for a
non-finite step). Metrics stay on the device until a log step.

Checkpoints are taken only at boundaries where the saved position says
exactly what comes next (after a step, or after an epoch's bookkeeping), so a
resumed run continues bit for bit.
"""

from __future__ import annotations

import logging
import math
import random
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vaeforge import checkpoint as ckpt
from vaeforge import distributed
from vaeforge.api import Context, DataSplits, LossResult, MetricSink
from vaeforge.config import ComponentSpec, RunConfig, to_dict
from vaeforge.errors import CheckpointError, ComponentError, ConfigError, NonFiniteError, UserError
from vaeforge.pipeline import Stage, apply_freeze, check_module_names, resolve_stages, threshold_crossed
from vaeforge.registry import Registry
from vaeforge.trainer.batches import TrainBatches, validation_batches
from vaeforge.trainer.composer import LossComposer, WeightedTerm, unique_names
from vaeforge.trainer.devices import Precision, select_device
from vaeforge.trainer.ema import EMA
from vaeforge.trainer.numerics import NonFiniteCheck, first_nonfinite_module, first_nonfinite_parameter
from vaeforge.trainer.observers import Observers
from vaeforge.trainer.step_stats import TrainStepStats

log = logging.getLogger("vaeforge")


class Trainer:
    """Trains one run.

    Parameters:
        config (`RunConfig`): the fully resolved config.
        registry (`Registry`): where component names are looked up.
        run_dir (`Path`): the run folder (created by :func:`vaeforge.run.prepare_run_dir`).
        device (`str`, *optional*): overrides the device choice.
        loggers (`bool`, *optional*): build the config's loggers (off for ``evaluate`` and ``sample``).
    """

    def __init__(self, config: RunConfig, registry: Registry, run_dir: Path, device: str | None = None,
                 *, loggers: bool = True):
        self.config = config
        self.registry = registry
        self.run_dir = Path(run_dir)
        self.dist = distributed.from_environment()
        self.device = select_device(device or config.trainer.device or (self.dist and str(self.dist.device())))
        self.precision = Precision(config.trainer.precision, self.device)
        seed_everything(config.seed)
        self.stages: list[Stage] = resolve_stages(config)
        self.pipeline = bool(config.stages)

        self.data: DataSplits = self._load_data()
        data_seed = config.data.seed if config.data.seed is not None else config.seed
        self.batches = TrainBatches(self.data.train, config.data, data_seed, self.device,
                                    shard=(self.dist.rank, self.dist.world_size) if self.dist else (0, 1))
        if self.batches.steps_per_epoch is None and not self._bounded_by_steps():
            raise ConfigError("$.trainer.max_steps: the data is an endless stream; set trainer.max_steps")
        self.val_batches = validation_batches(
            self.data.val, config.data.val_batch_size or config.data.batch_size, self.device
        )
        self.model: nn.Module = self._build("model", config.model, self.data.info).to(self.device)
        check_module_names(self.stages, self.model)
        self._check_stage_builds()
        self.ema = EMA(self.model, config.trainer.ema.decay, config.trainer.ema.warmup) if config.trainer.ema else None
        self.train_forward: Callable[..., Any] = self._wrap(self.model)
        self._compile_pending = config.trainer.compile.enabled
        if self.dist:  # identical initial weights everywhere, then a different noise stream per rank
            seed_everything(config.seed + self.dist.rank)

        self.callbacks: list[Any] = [self._build("callback", spec) for spec in config.callbacks]
        if not any(spec.name == "checkpoint" for spec in config.callbacks):
            self.callbacks.append(self._build("callback", ComponentSpec(name="checkpoint", params=None)))
        self.is_main = self.dist is None or self.dist.is_main
        build_loggers = loggers and self.is_main
        specs = config.loggers if build_loggers else []
        self.loggers: list[Any] = [self._build("logger", spec, self.run_dir) for spec in specs]
        self.metric_fns = [(spec.name, self._build("metric", spec)) for spec in config.metrics]
        self.observers = Observers(self.callbacks, self.loggers)

        self.ctx = Context(steps_per_epoch=self.batches.steps_per_epoch)
        self.step_metrics = MetricSink()
        self.epoch_metrics = MetricSink()
        self.ctx.metrics = self.step_metrics
        self.train_stats = TrainStepStats(self.step_metrics)
        self.nonfinite = NonFiniteCheck(self.device)
        self.metrics: dict[str, float] = {}
        self.global_step = 0
        self.stage_index = 0
        self.epoch = 0
        self.batch_index = 0
        self.skipped_steps = 0
        self.consecutive_skips = 0
        self.stage_start_step = 0
        self.optimizer: torch.optim.Optimizer | None = None
        self._trainable: list[nn.Parameter] = []
        self.scheduler: Any = None
        self.composer: LossComposer | None = None
        self._optimizer_stage = -1
        self._pending_state: dict[str, Any] | None = None
        self._pending_rng: dict[str, Any] | None = None
        self._resumed = False
        self._stage_done = False
        self._save_requests: list[dict[str, Any]] = []
        self._timer = time.perf_counter()
        self._timed_batches = 0
        self.finished = False

    # -- building -------------------------------------------------------------------------

    def _wrap(self, module: Any) -> Any:
        """``module`` as the training forward: wrapped in DistributedDataParallel in a torchrun run."""
        if self.dist is None:
            return module
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(module, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def _build(self, kind: str, spec: Any, *args: Any) -> Any:
        return self.registry.build(kind, spec.name, spec.params, *args)

    def _load_data(self) -> DataSplits:
        spec = self.config.data
        source = self._build("data_source", spec)
        try:
            return source.load()
        except (ValueError, TypeError, KeyError, OSError, RuntimeError) as exc:
            plugin = self.registry.get("data_source", spec.name).plugin
            raise ComponentError(f"data_source {spec.name!r} (plugin {plugin!r}): {exc}") from exc

    def _check_stage_builds(self) -> None:
        """Build every stage's optimizer, scheduler and loss terms once and throw them away.

        A factory that refuses its settings (``betas`` out of range, an optimizer
        that cannot take these parameters) then fails here, before the run folder
        exists, with the config path of the offending spec. Random number
        generators are left exactly as they were.
        """
        rng = ckpt.capture_rng()
        errors = []
        try:
            for stage in self.stages:
                prefix = f"$.stages[{stage.index}]" if self.pipeline else "$"
                apply_freeze(self.model, stage.frozen)
                trainable = [p for p in self.model.parameters() if p.requires_grad]
                try:
                    optimizer = self._build("optimizer", stage.optimizer, trainable)
                except UserError as exc:
                    errors.append(f"{self._spec_path(stage, 'optimizer', prefix)}: {exc}")
                    continue
                if stage.scheduler is not None:
                    try:
                        self._build("scheduler", stage.scheduler, optimizer, self._stage_length(stage))
                    except UserError as exc:
                        errors.append(f"{self._spec_path(stage, 'scheduler', prefix)}: {exc}")
                for index, spec in enumerate(stage.losses):
                    try:
                        self._build("loss", spec)
                    except UserError as exc:
                        errors.append(f"{self._spec_path(stage, 'losses', prefix)}[{index}]: {exc}")
        finally:
            apply_freeze(self.model, ())
            ckpt.restore_rng(rng)
        if errors:
            raise ConfigError(errors)

    def _spec_path(self, stage: Stage, key: str, prefix: str) -> str:
        """``$.stages[i].<key>`` when the stage names its own, else the run's ``$.<key>``."""
        own = self.pipeline and getattr(self.config.stages[stage.index], key) is not None
        return f"{prefix}.{key}" if own else f"$.{key}"

    def _bounded_by_steps(self) -> bool:
        return all(s.max_steps is not None for s in self.stages) or self.config.trainer.max_steps is not None

    def _setup_stage(self, stage: Stage) -> None:
        """Freeze, optimizer, scheduler and losses of ``stage``."""
        apply_freeze(self.model, stage.frozen)
        self._trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = self._build("optimizer", stage.optimizer, self._trainable)
        self.scheduler = (
            self._build("scheduler", stage.scheduler, self.optimizer, self._stage_length(stage))
            if stage.scheduler is not None
            else None
        )
        names = unique_names([spec.name for spec in stage.losses])
        terms = []
        for name, spec in zip(names, stage.losses):
            term = self._build("loss", spec)
            if isinstance(term, nn.Module):
                term.to(self.device)
            weight: Any = spec.weight
            if not isinstance(weight, (int, float)):
                weight = self._build("schedule", weight)
            terms.append(WeightedTerm(name=name, term=term, weight=weight))
        self.composer = LossComposer(terms)
        self.ctx.optimizer = self.optimizer
        self.ctx.stage = stage.name
        self._optimizer_stage = stage.index

    def _stage_length(self, stage: Stage) -> int | None:
        per_epoch = self.batches.steps_per_epoch
        limits = []
        if stage.epochs is not None and per_epoch is not None:
            limits.append(stage.epochs * per_epoch)
        if stage.max_steps is not None:
            limits.append(stage.max_steps)
        return min(limits) if limits else None

    # -- the loop ---------------------------------------------------------------------------

    def fit(self) -> dict[str, float]:
        """Run (or continue) every stage; returns the last logged metrics.

        A fresh run saves a ``start`` checkpoint before its first step, so a
        run killed at any moment can be resumed. A resumed run that had
        already finished only redoes the epilogue (samples, closing loggers).
        """
        self.observers.call("log_hparams", to_dict(self.config))
        self.observers.event("on_fit_start", self)
        try:
            while self.stage_index < len(self.stages):
                stage = self.stages[self.stage_index]
                if self._optimizer_stage != stage.index:
                    self._setup_stage(stage)
                    self._restore_stage_state()
                if self._pending_rng is not None:  # restored last: stage setup may draw random numbers
                    ckpt.restore_rng(self._pending_rng)
                    self._pending_rng = None
                elif not self._resumed and self.global_step == 0 and self.stage_index == 0:
                    self._save("start")
                    self._resumed = True
                if self.epoch == 0 and self.batch_index == 0:
                    self.stage_start_step = self.global_step
                    self.observers.event("on_stage_start", self, stage.name)
                self._run_stage(stage)
                self.observers.event("on_stage_end", self, stage.name)
                self.stage_index += 1
                self.epoch = 0
                self.batch_index = 0
                self._stage_done = False
            if not self.finished:
                self.finished = True
                self._save("end")
            self._write_samples()
        finally:
            self.observers.event("on_fit_end", self)
            self.observers.close()
        return self.metrics

    def _run_stage(self, stage: Stage) -> None:
        """The epochs of one stage, from the saved position on.

        The end of an epoch (validation, ``until``, callbacks asking to stop)
        is followed by one safe point whose checkpoint records whether the
        stage is over, so a resume never trains a finished stage further.
        """
        max_epochs = stage.epochs if stage.epochs is not None else math.inf
        while not self._stage_done and self.epoch < max_epochs and not self._stage_steps_done(stage):
            if self.batch_index == 0:
                self.observers.event("on_epoch_start", self)
            self._run_epoch(stage)
            if self._stage_steps_done(stage) and not self._epoch_complete():
                break  # max_steps ended the stage mid-epoch
            self._stage_done = self._end_epoch(stage)
            self.epoch += 1
            self.batch_index = 0
            self._process_saves()

    def _epoch_complete(self) -> bool:
        """True once every batch of the current epoch is done (never for endless streams)."""
        per_epoch = self.batches.steps_per_epoch
        return per_epoch is not None and self.batch_index >= per_epoch

    def _stage_steps_done(self, stage: Stage) -> bool:
        if stage.max_steps is not None and self.global_step - self.stage_start_step >= stage.max_steps:
            return True
        trainer_max = self.config.trainer.max_steps  # the whole run's cap, in a pipeline too
        return trainer_max is not None and self.global_step >= trainer_max

    def _run_epoch(self, stage: Stage) -> None:
        ctx = self.ctx
        ctx.epoch = self.epoch
        for batch in self.batches.epoch(stage.index, self.epoch, self.batch_index):
            ctx.batch_index = self.batch_index
            ctx.step = self.global_step
            result = self._train_step(batch)
            self.global_step += 1
            self.batch_index += 1
            self._timed_batches += 1
            self.observers.batch_end(self, result)
            if self.global_step % self.config.trainer.log_every_n_steps == 0:
                self._log_step_metrics()
            every = self.config.trainer.val_every_n_steps
            if every and self.global_step % every == 0:
                self._validate()
            if not self._epoch_complete():  # after the last batch, the epoch's end is the safe point
                self._process_saves()
            if self._stage_steps_done(stage):
                return

    def _train_step(self, batch: dict[str, torch.Tensor]) -> LossResult:
        if self._compile_pending:
            return self._first_compiled_step(batch)
        assert self.optimizer is not None and self.composer is not None
        ctx = self.ctx
        ctx.split = "train"
        if not self.model.training:
            self.model.train()
        self.composer.update_weights(ctx)
        with self.precision.autocast():
            out = self.train_forward(batch)
            result = self.composer(out, batch, ctx)
        self.optimizer.zero_grad(set_to_none=True)
        scaler = self.precision.scaler
        (scaler.scale(result.total) if scaler else result.total).backward()
        if scaler:
            scaler.unscale_(self.optimizer)
        grads = [p.grad for p in self._trainable if p.grad is not None]
        clip = self.config.trainer.grad_clip
        logs_next = (self.global_step + 1) % self.config.trainer.log_every_n_steps == 0
        if clip or logs_next:  # the norm costs a pass over the gradients: only when clipping or logging it
            grad_norm = torch.nn.utils.get_total_norm(grads)
        # the loss, its terms and the gradients checked in one fused pass, read with one host sync
        values = [result.total, *result.terms.values()]
        flag = self.nonfinite([*grads, *values])
        finite = self.dist.all_true(flag == 0) if self.dist else flag.item() == 0.0
        if finite:
            if clip:
                torch.nn.utils.clip_grads_with_norm_(self._trainable, clip, grad_norm)
            if logs_next:
                ctx.metrics.log("train/grad_norm", grad_norm)
            if scaler:
                scaler.step(self.optimizer)
                scaler.update()
            else:
                self.optimizer.step()
            if self.scheduler is not None:
                self.scheduler.step()
            if self.ema is not None:
                self.ema.update(self.model)
            for weighted in self.composer.terms:
                if hasattr(weighted.term, "auxiliary_step"):
                    for key, value in weighted.term.auxiliary_step(out, batch, ctx).items():
                        ctx.log(f"{weighted.name}/{key}", value)
            self.consecutive_skips = 0
            self.train_stats.add(self.composer.names(result, "train"), values)
        else:
            self._skip_step()
        return result

    def _skip_step(self) -> None:
        assert self.optimizer is not None
        bad_module = first_nonfinite_module(self.model)
        self.nonfinite.reset()
        self.optimizer.zero_grad(set_to_none=True)
        if self.precision.scaler:
            self.precision.scaler.update()
        self.skipped_steps += 1
        self.consecutive_skips += 1
        log.warning("step %d: non-finite loss or gradients; step skipped (%d in a row)",
                    self.global_step, self.consecutive_skips)
        limit = self.config.trainer.max_consecutive_skips
        if self.consecutive_skips >= limit:
            where = "; the loss is non-finite"
            if bad_module:
                where = f"; first non-finite gradients in module {bad_module!r}"
            raise NonFiniteError(
                f"stopped at step {self.global_step}: {limit} consecutive non-finite steps{where}"
            )

    def _first_compiled_step(self, batch: dict[str, torch.Tensor]) -> LossResult:
        """Try the first step compiled; on any failure warn once and continue eagerly from the same state."""
        self._compile_pending = False
        settings = self.config.trainer.compile
        rng = ckpt.capture_rng()
        try:
            self.train_forward = self._wrap(torch.compile(
                self.model, backend=settings.backend, mode=None if settings.mode == "default" else settings.mode,
                fullgraph=settings.fullgraph,
            ))
            return self._train_step(batch)
        except Exception as exc:  # any compiler failure: fall back, never crash the run
            message = " ".join(str(exc).split())[:300]
            warnings.warn(f"torch.compile failed ({type(exc).__name__}: {message}); training eagerly", stacklevel=2)
            log.warning("torch.compile failed (%s: %s); training eagerly", type(exc).__name__, message)
            self.train_forward = self._wrap(self.model)
            assert self.optimizer is not None
            self.optimizer.zero_grad(set_to_none=True)
            ckpt.restore_rng(rng)
            return self._train_step(batch)

    # -- metrics, validation, epoch end ---------------------------------------------------

    def _log_step_metrics(self) -> None:
        self.train_stats.flush()
        metrics = self.step_metrics.compute()
        self.step_metrics.reset()
        if self.dist and metrics:  # the mean over ranks, in an order every rank agrees on
            names = sorted(metrics)
            means = self.dist.mean(torch.tensor([metrics[n] for n in names], dtype=torch.float64, device=self.device))
            metrics = dict(zip(names, means.tolist()))
        elapsed = time.perf_counter() - self._timer
        if self._timed_batches:
            metrics["time/s_per_batch"] = elapsed / self._timed_batches
        self._timer = time.perf_counter()
        self._timed_batches = 0
        for name, value in metrics.items():
            if name.startswith("train/"):
                self.epoch_metrics.log(name, value)
        metrics.update(self._progress_values())
        self.metrics.update(metrics)
        self.observers.log_metrics(metrics, self.global_step, self._stage_name())

    def _progress_values(self) -> dict[str, float]:
        values = {"epoch": float(self.epoch), "train/skipped_steps": float(self.skipped_steps)}
        assert self.optimizer is not None
        values["train/lr"] = float(self.optimizer.param_groups[0]["lr"])
        for name, weight in self.ctx.weights.items():
            values[f"train/weight/{name}"] = float(weight)
        return values

    def _stage_name(self) -> str | None:
        return self.stages[self.stage_index].name if self.pipeline else None

    def log_metrics(self, metrics: dict[str, float]) -> None:
        """Log extra metrics at the current step (for callbacks and controllers)."""
        self.metrics.update(metrics)
        self.observers.log_metrics(metrics, self.global_step, self._stage_name())

    @torch.no_grad()
    def _validate(self) -> dict[str, float]:
        """One pass over the validation split with the evaluation model; logs ``val/*``."""
        assert self.composer is not None
        if not self.val_batches and not self.metric_fns:
            return {}  # nothing to validate: leave the model in training mode
        model = self.eval_model()
        model.eval()
        saved_split, saved_metrics = self.ctx.split, self.ctx.metrics
        sink = MetricSink()
        self.ctx.split, self.ctx.metrics = "val", sink
        self.ctx.step = self.global_step  # validation sees the weights of the step to come
        self.composer.update_weights(self.ctx)
        try:
            for batch in self.val_batches or []:
                with self.precision.autocast():
                    out = model(batch)
                    self.composer.log(self.composer(out, batch, self.ctx), self.ctx)
            metrics = sink.compute()
            for _, metric in self.metric_fns:
                for key, value in metric(model, self.data, self.ctx).items():
                    metrics[f"val/{key}"] = float(value)
        finally:
            self.ctx.split, self.ctx.metrics = saved_split, saved_metrics
        if metrics:
            self.metrics.update(metrics)
            self.observers.log_metrics(metrics, self.global_step, self._stage_name())
            self.observers.event("on_validation_end", self, metrics)
        return metrics

    def _write_samples(self, n: int = 64) -> None:
        """``samples/final.png`` (image data) or ``samples/final.npy`` from the evaluation model."""
        if not self.is_main or not hasattr(self.eval_model(), "sample"):
            return
        from vaeforge.samples import draw, is_image_batch, save_samples

        generator = torch.Generator(device=self.device).manual_seed(self.config.seed)
        samples = draw(self.eval_model().eval(), n, generator)
        name = "final.png" if is_image_batch(samples) else "final.npy"
        path = save_samples(samples, self.run_dir / "samples" / name)
        self.observers.call("log_artifact", path, "samples")

    def eval_model(self) -> nn.Module:
        """The model used for validation and sampling: the EMA when enabled."""
        return self.ema.module if self.ema is not None else self.model

    def _end_epoch(self, stage: Stage) -> bool:
        """Validation and bookkeeping at the end of an epoch; True when the stage should end."""
        self.train_stats.flush()
        if self.step_metrics:
            self._log_step_metrics()
        epoch_metrics = {f"epoch/{k}": v for k, v in self.epoch_metrics.compute().items()}
        self.epoch_metrics.reset()
        metrics = dict(epoch_metrics)
        if (self.epoch + 1) % self.config.trainer.val_every_n_epochs == 0:
            metrics.update(self._validate())
        summary = {k.removeprefix("epoch/"): v for k, v in epoch_metrics.items()}
        summary.update({k: v for k, v in metrics.items() if k.startswith("val/")})
        log.info("stage %s epoch %d (step %d): %s", stage.name, self.epoch + 1, self.global_step,
                 ", ".join(f"{k}={v:.6g}" for k, v in sorted(summary.items())))
        self.metrics.update(summary)
        if epoch_metrics:
            self.observers.log_metrics(epoch_metrics, self.global_step, self._stage_name())
        self.observers.event("on_epoch_end", self, summary)
        if self.observers.wants_histograms():
            tensors = {f"weights/{name}": p.detach() for name, p in self.model.named_parameters()}
            self.observers.call("log_histograms", tensors, self.global_step)
        stop = any(cb.should_stop(self) for cb in self.callbacks if hasattr(cb, "should_stop"))
        if stop:
            log.info("stage %s: a callback asked to stop after epoch %d", stage.name, self.epoch + 1)
        if stage.until is not None:
            if stage.until.metric not in summary and self.epoch == 0:
                log.warning("stage %s: until.metric %r is not a logged metric (logged: %s)", stage.name,
                            stage.until.metric, ", ".join(sorted(summary)))
            if threshold_crossed(stage.until, summary, self.epoch + 1):
                log.info("stage %s: %s crossed its threshold after epoch %d (step %d)", stage.name,
                         stage.until.metric, self.epoch + 1, self.global_step)
                self.metrics["transition_step"] = float(self.global_step)
                return True
        return stop

    # -- checkpoints ---------------------------------------------------------------------------

    def request_checkpoint(self, *, best: bool = False, keep_last: int | None = None, tag: str = "step") -> None:
        """Ask for a checkpoint at the next safe point (callbacks call this)."""
        self._save_requests.append({"best": best, "keep_last": keep_last, "tag": tag})

    def _process_saves(self) -> None:
        """Write one checkpoint for every request since the last safe point (requests are merged)."""
        requests, self._save_requests = self._save_requests, []
        if not requests:
            return
        keeps = [r["keep_last"] for r in requests if r["keep_last"]]
        tag = "+".join(dict.fromkeys(r["tag"] for r in requests))
        self._save(tag, best=any(r["best"] for r in requests), keep_last=max(keeps) if keeps else None)

    def checkpoint_root(self) -> Path:
        """``checkpoints/`` of the run folder."""
        return self.run_dir / "checkpoints"

    def _stage_folder(self) -> Path:
        stage = self.stages[min(self.stage_index, len(self.stages) - 1)]
        return self.checkpoint_root() / stage.name if self.pipeline else self.checkpoint_root()

    def _save(self, tag: str, *, best: bool = False, keep_last: int | None = None) -> Path | None:
        """Write a checkpoint of the current position (``<stage folder>/step-N``, ``step-N-1`` when taken).

        A later checkpoint of the same step (the end of the run right after
        its last epoch) supersedes the earlier ones, which are then deleted;
        ``best`` moves to the new folder; ``keep_last`` prunes the stage
        folder, never deleting the folder ``best`` names.

        In a torchrun run every rank calls this (it gathers every rank's
        random generator states) and rank 0 writes.
        """
        rng = self._rng_states()
        if not self.is_main:
            return None  # in a torchrun run only rank 0 writes
        bad = first_nonfinite_parameter(self.model)
        if bad is not None:
            log.warning("not saving a checkpoint at step %d: parameter %r is non-finite", self.global_step, bad)
            return None
        parent = self._stage_folder()
        folder = ckpt.next_step_folder(parent, self.global_step)
        meta = {"step": self.global_step, "stage": self.stages[min(self.stage_index, len(self.stages) - 1)].name,
                "stage_index": self.stage_index, "epoch": self.epoch, "batch_index": self.batch_index,
                "finished": self.finished, "tag": tag, "best": best}
        ckpt.save_checkpoint(folder, model=self.model.state_dict(), state=self.state_dict(rng),
                             ema=self.ema.module.state_dict() if self.ema else None, meta=meta)
        log.info("saved checkpoint %s (%s)", folder.relative_to(self.run_dir), tag)
        root = self.checkpoint_root()
        if best:
            ckpt.point_best(root, folder)
        protect = ckpt.best_target(root)
        for step, older in list(ckpt.step_folders(parent)):
            if step == self.global_step and older != folder and older.parent == parent and older.resolve() != protect:
                ckpt.remove_checkpoint(older)
        if keep_last:
            ckpt.prune_checkpoints(parent, keep_last, protect=protect)
        return folder

    def _rng_states(self) -> dict[str, Any]:
        """``{"rng": this process's generator states}``, plus ``"rng_ranks"`` (every rank's) in a torchrun run.

        Each rank draws its own noise, so each needs its own states back; in a
        torchrun run this is a collective that every rank must call.
        """
        rng = ckpt.capture_rng()
        if self.dist is None:
            return {"rng": rng}
        gathered: list[Any] = [None] * self.dist.world_size
        torch.distributed.all_gather_object(gathered, rng)  # in memory, between this run's own processes
        return {"rng": rng, "rng_ranks": gathered}

    def state_dict(self, rng: dict[str, Any] | None = None) -> dict[str, Any]:
        """Everything but the model and EMA weights that a resume needs.

        :param rng: :meth:`_rng_states` output; this process's states when omitted.
        Pending training-step rows are added to the step metrics first, so they are saved.
        """
        self.train_stats.flush()
        return {
            "progress": {
                "global_step": self.global_step,
                "stage_index": self.stage_index,
                "epoch": self.epoch,
                "batch_index": self.batch_index,
                "stage_done": self._stage_done,
                "skipped_steps": self.skipped_steps,
                "consecutive_skips": self.consecutive_skips,
                "stage_start_step": self.stage_start_step,
                "finished": self.finished,
                "optimizer_stage": self._optimizer_stage,
            },
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.precision.scaler.state_dict() if self.precision.scaler else None,
            "ema_updates": self.ema.updates if self.ema is not None else None,
            "losses": [t.term.state_dict() if hasattr(t.term, "state_dict") else None
                       for t in (self.composer.terms if self.composer else [])],
            "callbacks": [cb.state_dict() if hasattr(cb, "state_dict") else {} for cb in self.callbacks],
            "loggers": [lg.state_dict() if hasattr(lg, "state_dict") else {} for lg in self.loggers],
            "ctx": {"weight_scales": dict(self.ctx.weight_scales), "weights": dict(self.ctx.weights),
                    "values": {k: v for k, v in self.ctx.values.items() if isinstance(v, (int, float, str))}},
            "metric_sinks": {"step": self.step_metrics.state_dict(), "epoch": self.epoch_metrics.state_dict()},
            "metrics": dict(self.metrics),
            **(rng or {"rng": ckpt.capture_rng()}),
        }

    def load_checkpoint(self, folder: Path) -> None:
        """Restore a checkpoint written by :meth:`_save`.

        The optimizer, scheduler, scaler and loss-term states are restored
        once their stage is set up in :meth:`fit`, the random generators right
        before training continues.

        :raises CheckpointError: when the checkpoint is unreadable or does not fit this run.
        """
        folder = Path(folder)
        loaded = ckpt.load_checkpoint(folder, finite_exempt=("metric_sinks",))  # a term may log NaN in a skipped step
        try:
            self._restore(loaded, folder)
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError, AttributeError) as exc:
            message = " ".join(str(exc).split())[:400]
            raise CheckpointError(f"{folder}: does not fit this run ({type(exc).__name__}: {message})") from None

    def _restore(self, loaded: dict[str, Any], folder: Path) -> None:
        state = loaded["state"]
        progress = state["progress"]
        stage_index = int(progress["stage_index"])
        saved_stage = loaded["manifest"].get("stage")
        expected = self.stages[min(stage_index, len(self.stages) - 1)].name
        if stage_index > len(self.stages) or saved_stage != expected:
            raise CheckpointError(f"{folder}: a checkpoint of stage {saved_stage!r} (number {stage_index + 1}); "
                                  f"this run's config has stages {', '.join(s.name for s in self.stages)}")
        self.model.load_state_dict(loaded["model"])
        if self.ema is not None:
            if loaded["ema"] is None:
                raise CheckpointError(f"{folder}: the run uses EMA but the checkpoint has no ema.safetensors")
            self.ema.module.load_state_dict(loaded["ema"])
            self.ema.updates = int(state["ema_updates"] or 0)
        self.global_step = int(progress["global_step"])
        self.stage_index = stage_index
        self.epoch = int(progress["epoch"])
        self.batch_index = int(progress["batch_index"])
        self._stage_done = bool(progress.get("stage_done", False))
        self.skipped_steps = int(progress["skipped_steps"])
        self.consecutive_skips = int(progress["consecutive_skips"])
        self.stage_start_step = int(progress["stage_start_step"])
        self.finished = bool(progress["finished"])
        for callback, cb_state in zip(self.callbacks, state["callbacks"]):
            if hasattr(callback, "load_state_dict"):
                callback.load_state_dict(cb_state)
        for logger, lg_state in zip(self.loggers, state["loggers"]):
            if hasattr(logger, "load_state_dict"):
                logger.load_state_dict(lg_state)
        self.ctx.weight_scales.update(state["ctx"]["weight_scales"])
        self.ctx.weights.update(state["ctx"].get("weights", {}))
        self.ctx.values.update(state["ctx"]["values"])
        self.step_metrics.load_state_dict(state["metric_sinks"]["step"])
        self.epoch_metrics.load_state_dict(state["metric_sinks"]["epoch"])
        self.metrics = dict(state["metrics"])
        self._pending_state = state if int(progress["optimizer_stage"]) == self.stage_index else None
        rng = state["rng"]
        ranks = state.get("rng_ranks")
        if self.dist is not None and ranks is not None and len(ranks) == self.dist.world_size:
            rng = ranks[self.dist.rank]
        elif self.dist is not None:
            log.warning("%s was written by %s process(es) and this run has %d: every rank continues from rank 0's "
                        "random states, so the run will not match an uninterrupted one bit for bit",
                        folder, len(ranks) if ranks else 1, self.dist.world_size)
        ckpt.restore_rng(rng)  # fails now on a bad state; restored again in fit()
        self._pending_rng = rng
        self._resumed = True
        self._timer = time.perf_counter()

    def _restore_stage_state(self) -> None:
        state, self._pending_state = self._pending_state, None
        if state is None:
            return
        assert self.optimizer is not None and self.composer is not None
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            if self.scheduler is not None and state["scheduler"] is not None:
                self.scheduler.load_state_dict(state["scheduler"])
            if self.precision.scaler is not None and state["scaler"] is not None:
                self.precision.scaler.load_state_dict(state["scaler"])
            for weighted, loss_state in zip(self.composer.terms, state["losses"]):
                if loss_state is not None and hasattr(weighted.term, "load_state_dict"):
                    weighted.term.load_state_dict(loss_state)
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:
            message = " ".join(str(exc).split())[:400]
            raise CheckpointError(f"the checkpoint's optimizer or scheduler state does not fit stage "
                                  f"{self.stages[self.stage_index].name!r} ({type(exc).__name__}: {message})") from None


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def prune_checkpoints(folder: Path, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` step checkpoints directly inside ``folder`` (never ``best``'s)."""
    best = ckpt.best_target(Path(folder)) or ckpt.best_target(Path(folder).parent)
    ckpt.prune_checkpoints(folder, keep_last, protect=best)

__all__ = ["Trainer", "prune_checkpoints", "seed_everything"]
