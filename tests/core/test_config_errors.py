"""Bad configs: every problem is one ``error:`` line with its ``$.`` path, exit code 2, nothing written.

The corpus lives in ``bad_configs/*.yaml``; each file states the exact error
lines it must produce in ``# expect:`` header comments, in order. Every file
goes through ``validate`` and ``train --run-dir`` in-process; a representative
subset also goes through ``python -m vaeforge`` as a subprocess.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.core.clirun import cli_env, finish, run_cli, spawn_cli

BAD = Path(__file__).parent / "bad_configs"
CORPUS = sorted(BAD.glob("*.yaml"))

GOOD = """\
name: good
data: {name: synthetic, params: {num_examples: 64, dim: 4}}
model: {name: mlp_vae, params: {latent_dim: 2, hidden: [8]}}
losses: [{name: mse_recon}, {name: kl}]
"""


def expected(path: Path) -> list[str]:
    """The ``# expect:`` lines of a corpus file."""
    return [line.removeprefix("# expect: ") for line in path.read_text().splitlines() if line.startswith("# expect: ")]


@pytest.fixture(autouse=True)
def only_builtins(monkeypatch: pytest.MonkeyPatch) -> None:
    """Error texts list available components, so keep installed plugins out of them."""
    monkeypatch.setenv("VAEFORGE_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.delenv("VAEFORGE_STRICT_PLUGINS", raising=False)


@pytest.fixture
def good(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A valid config file in the working directory."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "good.yaml").write_text(GOOD)
    return "good.yaml"


def test_corpus_is_large_and_every_file_states_its_errors() -> None:
    assert len(CORPUS) >= 25
    for path in CORPUS:
        lines = expected(path)
        assert lines, f"{path.name} has no '# expect:' line"
        assert all(line.startswith(f"{path.name}") and ": $" in line for line in lines), path.name


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_bad_config_gives_exit_2_one_line_per_error_and_writes_nothing(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(BAD)
    before = sorted(p.name for p in BAD.iterdir())

    validate = run_cli(capsys, "validate", path.name)
    run_dir = tmp_path / "run"
    train = run_cli(capsys, "train", path.name, "--run-dir", str(run_dir))

    for result in (validate, train):
        assert result.code == 2
        assert result.err.splitlines() == [f"error: {line}" for line in expected(path)]
        assert "Traceback" not in result.err
        assert result.out == ""
    assert not run_dir.exists()
    assert sorted(p.name for p in BAD.iterdir()) == before  # no runs/, no SENTINEL


def test_all_errors_of_a_file_come_in_one_pass(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(BAD)
    result = run_cli(capsys, "validate", "three_errors.yaml")
    assert len(result.errors) == 3
    assert [line.split(": ")[1] for line in result.errors] == [
        "$.model.params.latent_dim", "$.optimizer.params.lr", "$.trainer.epoch"]


def test_python_tag_payload_would_run_under_an_unsafe_loader(tmp_path: Path) -> None:
    """The sentinel checks above mean something: the same payload does run when constructed."""
    target = tmp_path / "proof"
    yaml.unsafe_load(f'!!python/object/apply:os.mkdir ["{target}"]')  # noqa: S506 - the point of the test
    assert target.is_dir()


OVERRIDE_ERRORS = [
    ("trainer.epochs", "override 'trainer.epochs': expected key.path=value"),
    ("=3", "override '=3': expected key.path=value"),
    ("trainer..epochs=3",
     "override 'trainer..epochs=3': 'trainer..epochs' is not a key path like trainer.epochs or losses[1].weight"),
    ("losses[5].weight=2",
     "override 'losses[5].weight=2': $.losses[5].weight: index 5 is out of range ($.losses has 2 items)"),
    ("losses.weight=2", "override 'losses.weight=2': $.losses.weight: $.losses is not a mapping"),
    ("data.params.dim[0]=2", "override 'data.params.dim[0]=2': $.data.params.dim[0]: $.data.params.dim is not a list"),
    ("trainer.epoch=3", "override 'trainer.epoch=3': $.trainer.epoch: unknown key; did you mean 'epochs'?"),
    ("trainer.epochs=abc",
     "override 'trainer.epochs=abc': $.trainer.epochs: expected an integer, got a string ('abc')"),
    ("trainer.epochs=[1",
     "override 'trainer.epochs=[1': $.trainer.epochs: invalid YAML value: expected ',' or ']', but got '<stream end>'"),
    ("optimizer.params.lr=-1", "override 'optimizer.params.lr=-1': $.optimizer.params.lr: must be >= 0.0, got -1.0"),
    ("model.name=mlp_vea",
     "override 'model.name=mlp_vea': $.model.name: unknown model 'mlp_vea'; did you mean 'mlp_vae'? "
     "(available: mlp_vae)"),
    ("trainer.precision=!!python/name:os.system",
     "override 'trainer.precision=!!python/name:os.system': $.trainer.precision: "
     "Python tags are refused (!!python/name:os.system); a config holds plain data only"),
]


@pytest.mark.parametrize(("override", "line"), OVERRIDE_ERRORS, ids=[o for o, _ in OVERRIDE_ERRORS])
def test_bad_override(override: str, line: str, good: str, tmp_path: Path,
                      capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "train", good, override, "--run-dir", str(tmp_path / "run"))
    assert (result.code, result.errors) == (2, [line])
    assert not (tmp_path / "run").exists()


def test_every_bad_override_is_reported_at_once(good: str, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "validate", good, "trainer.epochs", "losses[9].weight=1", "trainer.epoch=3")
    assert result.code == 2
    assert [line.split("'")[1] for line in result.errors] == ["trainer.epochs", "losses[9].weight=1", "trainer.epoch=3"]


@pytest.mark.parametrize(
    ("target", "line"),
    [
        ("missing.yaml", "missing.yaml: $: no such file"),
        ("configs/missing", "configs/missing: $: no such file"),
        (".", ".: $: a folder, not a config file"),
        ("digts", "digts: $: neither a config file nor a preset; did you mean 'digits'? (presets: digits)"),
        ("latin1.yaml", "latin1.yaml: $: not a text file (not valid UTF-8)"),
        ("blank.yaml", "blank.yaml: $: the file is empty; expected a mapping of run settings"),
    ],
)
def test_bad_target(target: str, line: str, good: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "latin1.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
    (tmp_path / "blank.yaml").write_text("")
    result = run_cli(capsys, "train", target, "--run-dir", str(tmp_path / "run"))
    assert (result.code, result.errors) == (2, [line])
    assert not (tmp_path / "run").exists()


def test_real_cli_subprocesses_exit_2_without_traceback_or_run_folder(tmp_path: Path) -> None:
    """A representative subset through ``python -m vaeforge``, run side by side."""
    sentinel = tmp_path / "SENTINEL"
    evil = tmp_path / "evil.yaml"
    evil.write_text(f'name: evil\ndata: !!python/object/apply:os.mkdir ["{sentinel}"]\n'
                    "model: {name: mlp_vae}\nlosses: [{name: mse_recon}]\n")
    (tmp_path / "good.yaml").write_text(GOOD)
    env = cli_env(VAEFORGE_DISABLE_PLUGIN_AUTOLOAD="1")
    cases = {
        "python_tag": (["train", str(evil)], [
            f"{evil}:2: $.data: Python tags are refused (!!python/object/apply:os.mkdir); "
            "a config holds plain data only"]),
        "three_errors": (["train", "three_errors.yaml"], expected(BAD / "three_errors.yaml")),
        "stage_typo": (["train", "unknown_key_in_stage.yaml"], expected(BAD / "unknown_key_in_stage.yaml")),
        "bad_override": (["validate", str(tmp_path / "good.yaml"), "trainer.epochs=abc"], [
            "override 'trainer.epochs=abc': $.trainer.epochs: expected an integer, got a string ('abc')"]),
    }
    processes = {}
    for name, (args, _) in cases.items():
        extra = ["--run-dir", str(tmp_path / f"run-{name}")] if args[0] == "train" else []
        processes[name] = spawn_cli(*args, *extra, cwd=BAD, env=env)
    for name, (_, lines) in cases.items():
        result = finish(processes[name])
        assert result.code == 2, (name, result.err)
        assert result.err.splitlines() == [f"error: {line}" for line in lines], name
        assert "Traceback" not in result.err
        assert not (tmp_path / f"run-{name}").exists()
    assert not sentinel.exists()
    assert not (BAD / "runs").exists()
