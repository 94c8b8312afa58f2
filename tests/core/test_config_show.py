"""``vaeforge config show``: the fully resolved YAML, which loads back to the same config."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest
import yaml

from tests.core.clirun import run_cli
from vaeforge.config import (
    RunConfig,
    ScheduleSpec,
    TrainerConfig,
    config_from_dict,
    load_config,
    parse_override_path,
)
from vaeforge.errors import did_you_mean
from vaeforge.plugins import load_registry

RUN = """\
name: show
data: {name: synthetic, params: {num_examples: 64, dim: 4}}
model: {name: mlp_vae, params: {latent_dim: 2, hidden: [8]}}
losses:
  - {name: mse_recon}
  - {name: kl, weight: {schedule: cosine, start: 0.0, end: 0.5, epochs: 3}}
stages:
  - {name: warmup, epochs: 1, freeze: [decoder], until: {metric: train/loss, below: 0.5}}
  - {name: main, epochs: 2, optimizer: {name: adamw, params: {lr: 1.0e-3}}}
"""


@pytest.fixture(scope="module")
def registry():
    return load_registry(autoload=False)[1]


@pytest.fixture
def run_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VAEFORGE_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "run.yaml"
    path.write_text(RUN)
    return path


def show(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    result = run_cli(capsys, "config", "show", *args)
    assert (result.code, result.err) == (0, "")
    return result.out


@pytest.mark.parametrize("target", ["digits", "run.yaml"])
def test_shown_yaml_loads_back_to_an_equal_config(target: str, run_file: Path, registry,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    shown = show(capsys, target)
    (run_file.parent / "shown.yaml").write_text(shown)
    original = load_config(target, registry)
    assert load_config("shown.yaml", registry) == original
    assert config_from_dict(yaml.safe_load(shown), registry) == original


def test_overrides_apply_and_survive_the_round_trip(run_file: Path, registry,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    overrides = ["trainer.epochs=50", "losses[1].weight=0.2", "stages[1].optimizer.params.weight_decay=0.1"]
    document = yaml.safe_load(show(capsys, "run.yaml", *overrides))
    assert document["trainer"]["epochs"] == 50
    assert document["losses"][1]["weight"] == 0.2
    assert document["stages"][1]["optimizer"]["params"]["weight_decay"] == 0.1
    assert config_from_dict(document, registry) == load_config("run.yaml", registry, overrides)


def test_shown_yaml_is_fully_resolved(run_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document = yaml.safe_load(show(capsys, "run.yaml"))
    assert list(document) == [a.name for a in attrs.fields(RunConfig)]
    assert list(document["trainer"]) == [a.name for a in attrs.fields(TrainerConfig)]
    # the default optimizer is named and carries every parameter with its default
    assert document["optimizer"]["name"] == "adam"
    assert document["optimizer"]["params"]["lr"] == 1e-3
    assert document["optimizer"]["params"]["betas"] == [0.9, 0.999]
    assert document["losses"][1]["weight"] == {"schedule": "cosine", "start": 0.0, "end": 0.5, "epochs": 3.0,
                                               "steps": None, "delay": 0.0}
    assert document["stages"][0]["until"] == {"metric": "train/loss", "below": 0.5, "above": None, "min_epochs": 0}


def test_loaded_config_holds_component_config_instances(run_file: Path, registry) -> None:
    config = load_config("run.yaml", registry, ["optimizer.params.lr=0.01"])
    assert type(config.optimizer.params).__name__ == "AdamConfig"
    assert config.optimizer.params.lr == 0.01
    assert isinstance(config.losses[1].weight, ScheduleSpec)
    assert config.stages[1].optimizer.params.lr == 1e-3


def test_override_can_replace_a_whole_list_item(run_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document = yaml.safe_load(show(capsys, "run.yaml", "losses[1]={name: kl, weight: 0.5}", "stages=[]"))
    assert document["losses"][1] == {"name": "kl", "params": {"free_bits": 0.0}, "weight": 0.5}
    assert document["stages"] == []


def test_config_without_subcommand_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "config")
    assert result.code == 2
    assert result.out.startswith("usage: vaeforge config")
    assert "print the fully resolved config as YAML" in result.out


@pytest.mark.parametrize(
    ("text", "parts"),
    [("trainer.epochs", ["trainer", "epochs"]), ("losses[1].weight", ["losses", 1, "weight"]),
     ("stages[0].optimizer.params.lr", ["stages", 0, "optimizer", "params", "lr"])],
)
def test_parse_override_path(text: str, parts: list) -> None:
    assert parse_override_path(text) == parts


@pytest.mark.parametrize("text", ["", "a..b", "[0]", "a[x]", "a.b=", "1a"])
def test_parse_override_path_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="is not a key path"):
        parse_override_path(text)


@pytest.mark.parametrize(
    ("word", "choices", "hint"),
    [
        ("lerning_rate", ["lr", "betas"], "; did you mean 'lr'?"),
        ("learning_rate", ["lr", "betas"], "; did you mean 'lr'?"),
        ("wd", ["lr", "weight_decay"], "; did you mean 'weight_decay'?"),
        ("epoch", ["epochs", "max_steps"], "; did you mean 'epochs'?"),
        ("zzz", ["lr", "betas"], ""),
    ],
)
def test_did_you_mean(word: str, choices: list[str], hint: str) -> None:
    assert did_you_mean(word, choices) == hint


ALIASED = """\
name: aliased
data: {name: synthetic}
model: {name: mlp_vae}
losses: [{name: mse_recon}, &kl {name: kl, weight: &ramp {schedule: linear, start: 0.0, end: 1.0, epochs: 2}}]
optimizer: &opt {name: adamw, params: {lr: 0.001}}
stages:
  - {name: a, epochs: 1, optimizer: *opt, losses: [*kl]}
  - {name: b, epochs: 1, optimizer: *opt, losses: [{name: kl, weight: *ramp}]}
"""


def test_yaml_aliases_resolve_like_copies_and_show_without_anchors(tmp_path: Path, registry,
                                                                  capsys: pytest.CaptureFixture[str],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAEFORGE_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.chdir(tmp_path)
    Path("aliased.yaml").write_text(ALIASED)
    config = load_config("aliased.yaml", registry)
    assert config.stages[0].optimizer == config.stages[1].optimizer == config.optimizer
    assert config.stages[1].losses[0].weight == config.losses[1].weight
    shown = show(capsys, "aliased.yaml")
    assert "&" not in shown and "*" not in shown
    Path("shown.yaml").write_text(shown)
    assert load_config("shown.yaml", registry) == config
