"""Pipeline config errors: named at their ``$.stages[i]`` path, exit code 2, nothing written."""

from __future__ import annotations

import copy

import pytest
import yaml

from vaeforge.cli import main

BASE = {
    "name": "pipe",
    "data": {"name": "synthetic", "params": {"num_examples": 32, "dim": 4}, "batch_size": 8},
    "model": {"name": "mlp_vae", "params": {"latent_dim": 2, "hidden": [8]}},
    "losses": [{"name": "mse_recon"}, {"name": "kl"}],
    "trainer": {"device": "cpu"},
    "loggers": [{"name": "jsonl"}],
    "stages": [{"name": "warmup", "epochs": 1, "freeze": ["decoder"]},
               {"name": "main", "epochs": 1, "unfreeze": ["decoder"]}],
}


def train(tmp_path, capsys, stages):
    document = copy.deepcopy(BASE)
    document["stages"] = stages
    config = tmp_path / "pipe.yaml"
    config.write_text(yaml.safe_dump(document))
    run_dir = tmp_path / "runs" / "pipe"
    code = main(["train", str(config), "--run-dir", str(run_dir)])
    err = capsys.readouterr().err
    assert not (tmp_path / "runs").exists(), "nothing may be written for a config error"
    return code, err


def test_freezing_a_submodule_that_does_not_exist(tmp_path, capsys):
    code, err = train(tmp_path, capsys, [{"name": "warmup", "epochs": 1, "freeze": ["encoder", "decodr"]},
                                         {"name": "main", "epochs": 1, "unfreeze": ["decodr"]}])
    assert code == 2
    lines = err.splitlines()
    assert lines[0] == ("error: $.stages[0].freeze[1]: no submodule 'decodr'; did you mean 'decoder'? "
                        "(top-level submodules: encoder, decoder)")
    assert lines[1].startswith("error: $.stages[1].unfreeze[0]: no submodule 'decodr'; did you mean 'decoder'?")
    assert len(lines) == 2 and "Traceback" not in err


def test_nested_submodules_are_fine_and_misspelt_ones_get_a_suggestion(tmp_path, capsys):
    code, err = train(tmp_path, capsys, [{"name": "warmup", "epochs": 1, "freeze": ["encodr.2"]}])
    assert code == 2
    assert "error: $.stages[0].freeze[0]: no submodule 'encodr.2'; did you mean 'encoder.2'?" in err


def test_a_stage_that_freezes_everything(tmp_path, capsys):
    code, err = train(tmp_path, capsys, [{"name": "warmup", "epochs": 1, "freeze": ["encoder", "decoder"]}])
    assert code == 2
    assert "error: $.stages[0].freeze: stage 'warmup' freezes every parameter; nothing would train" in err


@pytest.mark.parametrize("name", ["best", "a/b", "..", ""])
def test_a_stage_name_that_cannot_name_a_folder(tmp_path, capsys, name):
    code, err = train(tmp_path, capsys, [{"name": name, "epochs": 1}])
    assert code == 2
    assert f"$.stages[0].name: {name!r} cannot name a checkpoint folder" in err


def test_repeated_stage_names(tmp_path, capsys):
    code, err = train(tmp_path, capsys, [{"name": "a", "epochs": 1}, {"name": "a", "epochs": 1}])
    assert code == 2
    assert "$.stages: stage names must be unique; repeated: a" in err
