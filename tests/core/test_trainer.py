"""The training loop: metrics, the non-finite guard, compile fallback, EMA, data paths, precision."""

from __future__ import annotations

import copy
import json
import math
import warnings

import pytest
import torch
from attrs import field, frozen

from tests.conftest import tiny_run
from vaeforge import hookimpl
from vaeforge.api import Callback, Logger
from vaeforge.checkpoint import best_target, find_latest, read_manifest, step_folders
from vaeforge.errors import ComponentError, ConfigError, NonFiniteError


@frozen(kw_only=True)
class PoisonConfig:
    """Where the poison goes.

    :param steps: the steps at which the loss is NaN.
    :param where: ``loss`` (a NaN loss) or ``encoder`` (finite loss, NaN encoder gradients).
    """

    steps: list[int] = field(factory=list)
    where: str = "loss"


class Poison:
    """A zero-valued loss term that turns non-finite at chosen steps."""

    def __init__(self, config: PoisonConfig):
        self.config = config

    def __call__(self, out, batch, ctx):
        zero = out.recon.sum() * 0.0
        if not ctx.training or ctx.step not in self.config.steps:
            return zero
        if self.config.where == "loss":
            return zero + float("nan")
        return torch.sqrt(out.posterior.logvar * 0.0).sum()  # value 0, gradient NaN


class Recorder(Callback):
    """Keeps a copy of the weights, Adam's step count and the learning rate after every step."""

    def __init__(self, config=None):
        self.weights, self.adam_steps, self.lrs = {}, {}, {}

    def on_batch_end(self, trainer, result):
        step = trainer.global_step
        self.weights[step] = copy.deepcopy(trainer.model.state_dict())
        state = trainer.optimizer.state_dict()["state"]
        self.adam_steps[step] = float(state[0]["step"]) if state else 0.0
        self.lrs[step] = trainer.optimizer.param_groups[0]["lr"]


class Exploding(Logger):
    """A logger whose backend is down."""

    def __init__(self, config, run_dir):
        self.calls = 0

    def log_metrics(self, metrics, step):
        self.calls += 1
        raise ConnectionError("tracking server unreachable")


class TestPlugin:
    """Registers the helpers above under test-only names."""

    __name__ = "trainer_test_plugin"

    @hookimpl
    def register_losses(self, register):
        register("poison", Poison, config=PoisonConfig)

    @hookimpl
    def register_callbacks(self, register):
        register("recorder", Recorder)

    @hookimpl
    def register_loggers(self, register):
        register("exploding", Exploding)


PLUGIN = TestPlugin()


def read_metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def recorder(trainer) -> Recorder:
    return next(cb for cb in trainer.callbacks if isinstance(cb, Recorder))


def test_fit_logs_every_term_and_validates_each_epoch(make_trainer, tmp_path):
    trainer = make_trainer(tiny_run())
    trainer.fit()
    assert trainer.batches.steps_per_epoch == 8  # 230 training examples of 256, batch 32
    rows = read_metrics(tmp_path / "run")
    step_rows = [r for r in rows if "train/loss" in r]
    assert [r["step"] for r in step_rows] == [4, 8, 12, 16]
    for row in step_rows:
        assert row["train/loss"] == pytest.approx(row["train/mse_recon"] + 0.5 * row["train/kl"], rel=1e-5)
        assert row["time/s_per_batch"] > 0
        assert 0 < row["train/grad_norm"] < 1e3  # the norm of the logging step's gradients
    val_rows = [r for r in rows if "val/loss" in r]
    assert [r["step"] for r in val_rows] == [8, 16]
    epoch_rows = [r for r in rows if "epoch/train/loss" in r]
    assert len(epoch_rows) == 2
    latest = find_latest(tmp_path / "run" / "checkpoints")
    assert read_manifest(latest)["step"] == 16 and read_manifest(latest)["finished"] is True
    assert (tmp_path / "run" / "samples" / "final.npy").is_file()


@pytest.mark.parametrize("where", ["loss", "encoder"])
def test_a_nan_loss_or_gradient_skips_exactly_that_step(make_trainer, where):
    run = tiny_run(losses=[{"name": "mse_recon"}, {"name": "kl"},
                           {"name": "poison", "params": {"steps": [5], "where": where}}],
                   callbacks=[{"name": "recorder"}], scheduler={"name": "warmup_cosine", "params": {"warmup_steps": 3}})
    trainer = make_trainer(run, PLUGIN)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit()
    rec = recorder(trainer)
    # the step with index 5 is the 6th batch: the state after it equals the state before it
    for name, before in rec.weights[5].items():
        assert torch.equal(rec.weights[6][name], before), name
    assert any(not torch.equal(rec.weights[7][n], rec.weights[6][n]) for n in rec.weights[6])
    assert rec.adam_steps[6] == rec.adam_steps[5] == 5.0 and rec.adam_steps[7] == 6.0
    assert rec.lrs[6] == rec.lrs[5] and rec.lrs[7] != rec.lrs[6]
    assert trainer.skipped_steps == 1
    assert trainer.global_step == 16  # the run completed
    assert trainer.metrics["train/skipped_steps"] == 1.0
    assert all(math.isfinite(v) for k, v in trainer.metrics.items() if k.startswith("train/"))


def test_consecutive_nans_stop_the_run_naming_step_and_module(make_trainer, tmp_path):
    run = tiny_run(losses=[{"name": "mse_recon"}, {"name": "kl"},
                           {"name": "poison", "params": {"steps": list(range(3, 100)), "where": "encoder"}}],
                   trainer={"max_consecutive_skips": 4})
    trainer = make_trainer(run, PLUGIN)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(NonFiniteError) as error:
            trainer.fit()
    assert str(error.value) == (
        "stopped at step 6: 4 consecutive non-finite steps; first non-finite gradients in module 'encoder.0'"
    )
    assert trainer.skipped_steps == 4
    latest = find_latest(tmp_path / "run" / "checkpoints")  # only the start checkpoint, from before the NaNs
    assert read_manifest(latest)["step"] == 0


def test_failing_compile_backend_warns_and_trains_eagerly(make_trainer):
    import torch._dynamo

    @torch._dynamo.register_backend(name="vaeforge_test_broken")
    def broken(graph_module, example_inputs):
        raise RuntimeError("this backend always fails")

    run = tiny_run(trainer={"compile": {"enabled": True, "backend": "vaeforge_test_broken"}})
    trainer = make_trainer(run)
    with pytest.warns(UserWarning, match=r"torch.compile failed \(.*this backend always fails.*\); training eagerly"):
        trainer.fit()
    assert trainer.global_step == 16
    assert trainer.train_forward is trainer.model


def test_unknown_compile_backend_falls_back_too(make_trainer):
    trainer = make_trainer(tiny_run(trainer={"compile": {"enabled": True, "backend": "no_such_backend"}}))
    with pytest.warns(UserWarning, match="torch.compile failed"):
        trainer.fit()
    assert trainer.global_step == 16


def test_failed_compile_run_matches_an_eager_run(make_trainer, tmp_path):
    eager = make_trainer(tiny_run(), run_dir=tmp_path / "eager")
    eager.fit()
    failing = make_trainer(tiny_run(trainer={"compile": {"enabled": True, "backend": "no_such_backend"}}),
                           run_dir=tmp_path / "failing")
    with pytest.warns(UserWarning):
        failing.fit()
    for name, tensor in eager.model.state_dict().items():
        assert torch.equal(failing.model.state_dict()[name], tensor), name


def test_a_raising_logger_is_switched_off_and_training_goes_on(make_trainer, tmp_path):
    trainer = make_trainer(tiny_run(loggers=[{"name": "exploding"}, {"name": "jsonl"}]), PLUGIN)
    with pytest.warns(RuntimeWarning, match="logger Exploding failed in log_metrics .*unreachable.*switched off"):
        trainer.fit()
    assert trainer.loggers[0].calls == 1
    assert trainer.global_step == 16
    assert len(read_metrics(tmp_path / "run")) > 4


def test_ema_is_used_for_validation(make_trainer):
    trainer = make_trainer(tiny_run(trainer={"ema": {"decay": 0.9, "warmup": False}}))
    trainer.fit()
    assert trainer.ema.updates == 16
    assert trainer.eval_model() is trainer.ema.module
    differs = [not torch.equal(a, b) for a, b in zip(trainer.ema.module.parameters(), trainer.model.parameters())]
    assert all(differs)


def test_ema_with_zero_decay_tracks_the_weights(make_trainer):
    trainer = make_trainer(tiny_run(trainer={"ema": {"decay": 0.0}}))
    trainer.fit()
    for a, b in zip(trainer.ema.module.parameters(), trainer.model.parameters()):
        assert torch.equal(a, b)


def test_endless_stream_runs_to_max_steps(make_trainer):
    run = tiny_run(data={"name": "synthetic", "params": {"dim": 8, "stream": True}, "batch_size": 16},
                   trainer={"epochs": None, "max_steps": 10})
    trainer = make_trainer(run)
    trainer.fit()
    assert trainer.global_step == 10


def test_endless_stream_without_max_steps_is_a_config_error(make_trainer):
    run = tiny_run(data={"name": "synthetic", "params": {"dim": 8, "stream": True}, "batch_size": 16})
    with pytest.raises(ConfigError, match=r"\$.trainer.max_steps: the data is an endless stream"):
        make_trainer(run)


def test_dataloader_path_and_subset(make_trainer):
    run = tiny_run(data={"name": "synthetic", "params": {"dim": 8, "map_style": True}, "batch_size": 32, "subset": 64})
    trainer = make_trainer(run)
    trainer.fit()
    assert trainer.batches.steps_per_epoch == 2
    assert trainer.global_step == 4


def test_bf16_autocast_trains_on_cpu(make_trainer):
    trainer = make_trainer(tiny_run(trainer={"precision": "bf16"}))
    trainer.fit()
    assert math.isfinite(trainer.metrics["train/loss"])


def test_fp16_needs_cuda(make_trainer):
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        make_trainer(tiny_run(trainer={"precision": "fp16"}))


def test_device_from_environment(make_trainer, monkeypatch):
    monkeypatch.setenv("VAEFORGE_DEVICE", "cpu")
    assert make_trainer(tiny_run()).device.type == "cpu"
    monkeypatch.setenv("VAEFORGE_DEVICE", "tpu9")
    with pytest.raises(ConfigError, match="device 'tpu9'"):
        make_trainer(tiny_run())


def test_early_stopping_ends_the_run(make_trainer):
    run = tiny_run(trainer={"epochs": 10},
                   callbacks=[{"name": "early_stopping",
                               "params": {"monitor": "val/loss", "patience": 1, "min_delta": 1e9}}])
    trainer = make_trainer(run)
    trainer.fit()
    assert trainer.global_step == 2 * 8  # the first epoch sets the best, the second exhausts patience
    assert trainer.ctx.values["patience"] == "1/1"


def test_checkpoint_callback_keeps_the_last_n_and_the_best(make_trainer, tmp_path):
    run = tiny_run(trainer={"epochs": 4},
                   callbacks=[{"name": "checkpoint",
                               "params": {"every_n_steps": 3, "keep_last": 2, "save_best": True}}])
    make_trainer(run).fit()
    root = tmp_path / "run" / "checkpoints"
    best = best_target(root)
    steps = sorted(read_manifest(path)["step"] for _, path in step_folders(root) if path.resolve() != best)
    assert steps == [30, 32]  # keep_last 2: the step-30 save and the end of the run
    val = {r["step"]: r["val/loss"] for r in read_metrics(tmp_path / "run") if "val/loss" in r}
    assert read_manifest(best)["step"] == min(val, key=val.get)


def test_lr_monitor_logs_each_group(make_trainer, tmp_path):
    make_trainer(tiny_run(callbacks=[{"name": "lr_monitor"}])).fit()
    rows = [r for r in read_metrics(tmp_path / "run") if "lr/group0" in r]
    assert [r["lr/group0"] for r in rows] == [0.01, 0.01]


def test_a_factory_error_names_the_component_and_plugin(make_trainer):
    run = tiny_run(data={"name": "tensor_file", "params": {"path": "/nonexistent/data.npy"}, "batch_size": 8})
    with pytest.raises(ComponentError, match=r"data_source 'tensor_file' \(plugin 'vaeforge'\): .*no such file"):
        make_trainer(run)


def test_weight_schedule_reaches_the_loss(make_trainer, tmp_path):
    run = tiny_run(losses=[{"name": "mse_recon"},
                           {"name": "kl", "weight": {"schedule": "linear", "start": 0.0, "end": 1.0, "steps": 8}}])
    make_trainer(run).fit()
    weights = [r["train/weight/kl"] for r in read_metrics(tmp_path / "run") if "train/weight/kl" in r]
    # logged after steps 4, 8, 12, 16: the weight of the step just taken (index 3, 7, 11, 15)
    assert weights == pytest.approx([3 / 8, 7 / 8, 1.0, 1.0])


def test_a_refused_optimizer_setting_is_a_config_error_before_any_file(vaeforge_pm, tmp_path):
    from vaeforge import run
    from vaeforge.config import config_from_dict
    from vaeforge.plugins import build_registry

    registry = build_registry(vaeforge_pm)
    config = config_from_dict(tiny_run(optimizer={"name": "adam", "params": {"betas": [0.9, 1.5]}}), registry)
    with pytest.raises(ConfigError) as error:
        run.train(config, registry, tmp_path / "run")
    assert error.value.lines == [
        "$.optimizer: optimizer 'adam' (plugin 'vaeforge'): Invalid beta parameter at index 1: 1.5"
    ]
    assert not (tmp_path / "run").exists()
