"""Malicious and broken checkpoint files are refused with a clear error, and nothing in them ever runs.

Every payload below creates a sentinel file when unpickled (a control test
shows it does). Where a payload replaces a listed file, the manifest's sha256
is updated to match, so the hash check alone does not save us: the file must
be refused for what it is.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shutil
import struct
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_helpers import checkpoints, tiny_config, train

from vaeforge import checkpoint as ckpt
from vaeforge.cli import main
from vaeforge.errors import CheckpointError


class Payload:
    """Unpickling this creates ``sentinel``."""

    def __init__(self, sentinel: Path):
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return open, (self.sentinel, "w")


class LoadFromBytesGadget:
    """The ``torch.storage._load_from_bytes`` gadget: a torch.save stream inside an innocent-looking call."""

    def __init__(self, inner: bytes):
        self.inner = inner

    def __reduce__(self):
        return torch.storage._load_from_bytes, (self.inner,)


@pytest.fixture(scope="module")
def good_run(tmp_path_factory, registry):
    """A finished tiny run with EMA; its last checkpoint is the template every case tampers with."""
    folder = tmp_path_factory.mktemp("malicious") / "run"
    train(tiny_config(**{"trainer.epochs": 1, "callbacks": [{"name": "checkpoint", "params": {"keep_last": 1}}]}),
          folder, registry)
    return folder


@pytest.fixture
def sentinel(tmp_path):
    path = tmp_path / "PWNED"
    yield path
    assert not path.exists(), "a payload ran"


@pytest.fixture
def victim(good_run, tmp_path):
    """A copy of the good run's newest checkpoint folder."""
    source = checkpoints(good_run)[-1]
    target = tmp_path / "ckpt" / source.name
    shutil.copytree(source, target)
    return target


def payloads(sentinel: Path) -> dict[str, bytes]:
    inner = io.BytesIO()
    torch.save(Payload(sentinel), inner)
    return {
        "pickle": pickle.dumps(Payload(sentinel)),
        "pickle-protocol-0": pickle.dumps(Payload(sentinel), protocol=0),
        "torch.save": inner.getvalue(),
        "_load_from_bytes gadget": pickle.dumps(LoadFromBytesGadget(inner.getvalue())),
    }


def replace(folder: Path, name: str, data: bytes, update_hash: bool = True) -> None:
    (folder / name).write_bytes(data)
    if update_hash and name != ckpt.MANIFEST:
        manifest = json.loads((folder / ckpt.MANIFEST).read_text())
        manifest["files"][name] = hashlib.sha256(data).hexdigest()
        (folder / ckpt.MANIFEST).write_text(json.dumps(manifest))


def edit_manifest(folder: Path, **changes) -> None:
    manifest = json.loads((folder / ckpt.MANIFEST).read_text())
    manifest.update(changes)
    (folder / ckpt.MANIFEST).write_text(json.dumps(manifest))


def refused(folder: Path, file: str, *fragments: str) -> str:
    with pytest.raises(CheckpointError) as caught:
        ckpt.load_checkpoint(folder)
    message = str(caught.value)
    assert str(folder / file) in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def safetensors_bytes(header: dict | bytes, body: bytes = b"", length: int | None = None) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + body


def test_control_the_payloads_are_live(tmp_path):
    for name, data in payloads(tmp_path / "sentinel").items():
        (tmp_path / "sentinel").unlink(missing_ok=True)
        if name == "torch.save":
            torch.load(io.BytesIO(data), weights_only=False)  # noqa: S614 - the control: this is what we never do
        else:
            pickle.loads(data)  # noqa: S301 - the control: this is what we never do
        assert (tmp_path / "sentinel").exists(), name


@pytest.mark.parametrize("file", ["model.safetensors", "ema.safetensors", "state.safetensors", "state.json"])
@pytest.mark.parametrize("kind", ["pickle", "pickle-protocol-0", "torch.save", "_load_from_bytes gadget"])
def test_a_pickle_where_a_listed_file_belongs_is_refused(file, kind, victim, sentinel):
    replace(victim, file, payloads(sentinel)[kind])
    expected = "not valid JSON" if file.endswith(".json") else "not a valid safetensors file"
    refused(victim, file, expected)


@pytest.mark.parametrize("kind", ["pickle", "pickle-protocol-0", "torch.save", "_load_from_bytes gadget"])
def test_a_pickle_where_the_manifest_belongs_is_refused(kind, victim, sentinel):
    replace(victim, ckpt.MANIFEST, payloads(sentinel)[kind])
    refused(victim, ckpt.MANIFEST, "not valid JSON")
    with pytest.warns(UserWarning, match="manifest.json: not valid JSON"):
        assert ckpt.find_latest(victim.parent) is None


def test_overlapping_offsets_are_refused(victim):
    header = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
              "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}
    replace(victim, "model.safetensors", safetensors_bytes(header, bytes(12)))
    refused(victim, "model.safetensors", "not a valid safetensors file")


def test_an_oversized_header_is_refused(victim):
    replace(victim, "state.safetensors", safetensors_bytes(b'{"a": 1}', length=200 * 1024 * 1024))
    refused(victim, "state.safetensors", "not a valid safetensors file")


def test_a_header_that_does_not_cover_the_buffer_is_refused(victim):
    header = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
    replace(victim, "model.safetensors", safetensors_bytes(header, bytes(16)))
    refused(victim, "model.safetensors", "not a valid safetensors file")


def test_a_wrong_hash_is_refused(victim):
    manifest = json.loads((victim / ckpt.MANIFEST).read_text())
    manifest["files"]["state.json"] = "0" * 64
    (victim / ckpt.MANIFEST).write_text(json.dumps(manifest))
    refused(victim, "state.json", "sha256 does not match the manifest")


@pytest.mark.parametrize("file", ["model.safetensors", "state.safetensors", "state.json"])
def test_a_truncated_file_is_refused(file, victim):
    data = (victim / file).read_bytes()
    (victim / file).write_bytes(data[: len(data) // 2])
    refused(victim, file, "sha256 does not match the manifest")
    replace(victim, file, data[: len(data) // 2])  # even with a matching hash
    refused(victim, file, "not valid JSON" if file.endswith(".json") else "not a valid safetensors file")


def test_a_missing_file_is_refused(victim):
    (victim / "ema.safetensors").unlink()
    refused(victim, "ema.safetensors", "missing (listed in the manifest)")


@pytest.mark.parametrize("version", [999, 0, "1", 1.0, None, True])
def test_an_unknown_format_version_is_refused(version, victim):
    edit_manifest(victim, format_version=version)
    refused(victim, ckpt.MANIFEST, "checkpoint format version", "is not supported")


@pytest.mark.parametrize("name", ["../../../../etc/passwd", "/etc/passwd", "..", ".hidden", "sub/model.safetensors",
                                  "model.safetensors\x00", "extra.bin"])
def test_a_file_name_outside_the_format_is_refused(name, victim):
    manifest = json.loads((victim / ckpt.MANIFEST).read_text())
    manifest["files"][name] = "0" * 64
    (victim / ckpt.MANIFEST).write_text(json.dumps(manifest))
    refused(victim, ckpt.MANIFEST, "invalid file name")


def test_a_manifest_of_the_wrong_shape_is_refused(victim):
    (victim / ckpt.MANIFEST).write_text(json.dumps({"format_version": 1, "files": ["model.safetensors"]}))
    refused(victim, ckpt.MANIFEST, "not a vaeforge checkpoint manifest")
    (victim / ckpt.MANIFEST).write_text(json.dumps({"format_version": 1, "files": {"model.safetensors": "0" * 64}}))
    refused(victim, ckpt.MANIFEST, "does not list state.safetensors")
    (victim / ckpt.MANIFEST).write_text(json.dumps({"format_version": 1, "files": {"state.json": 5}}))
    refused(victim, ckpt.MANIFEST, "sha256 of state.json")


def test_a_huge_manifest_is_refused_unread(victim):
    (victim / ckpt.MANIFEST).write_bytes(b" " * (2 * 1024 * 1024))
    refused(victim, ckpt.MANIFEST, "larger than")


def test_a_symlink_or_fifo_in_place_of_a_file_is_refused(victim, tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes((victim / "model.safetensors").read_bytes())
    (victim / "model.safetensors").unlink()
    (victim / "model.safetensors").symlink_to(secret)
    refused(victim, "model.safetensors", "symbolic link")
    (victim / "model.safetensors").unlink()
    os.mkfifo(victim / "model.safetensors")  # reading a FIFO with no writer would block forever
    refused(victim, "model.safetensors", "not a regular file")


def nan_model(victim: Path, name: str, value: float) -> None:
    tensors = ckpt.parse_safetensors((victim / name).read_bytes(), victim / name)
    tensors["encoder.0.weight"][0, 0] = value
    from safetensors.torch import save

    replace(victim, name, save(tensors))


def test_nan_in_model_weights_is_refused_naming_the_tensor(victim):
    nan_model(victim, "model.safetensors", float("nan"))
    refused(victim, "model.safetensors", "non-finite values", "encoder.0.weight")


def test_infinity_in_ema_weights_is_refused_naming_the_tensor(victim):
    nan_model(victim, "ema.safetensors", float("inf"))
    refused(victim, "ema.safetensors", "non-finite values", "encoder.0.weight")


def test_nan_in_optimizer_state_is_refused_naming_the_path(victim):
    loaded = ckpt.load_checkpoint(victim)
    skeleton = json.loads((victim / "state.json").read_text())
    key = skeleton["optimizer"]["state"]["__items__"][0][1]["exp_avg"]["__tensor__"]
    tensors = ckpt.parse_safetensors((victim / "state.safetensors").read_bytes(), victim)
    tensors[key] = tensors[key].clone().fill_(float("nan"))
    from safetensors.torch import save

    replace(victim, "state.safetensors", save(tensors))
    assert loaded["state"]["optimizer"]["state"][0]["exp_avg"].isfinite().all()
    refused(victim, "state.safetensors", "non-finite values", "optimizer.state[0].exp_avg")


@pytest.mark.parametrize("skeleton", [
    {"x": {"__ndarray__": "t0", "dtype": "O"}},  # an object array would hold arbitrary Python objects
    {"x": {"__ndarray__": "t0", "dtype": "V8"}},
    {"x": {"__tensor__": "no-such-tensor"}},
    {"x": {"__tensor__": ["unhashable"]}},
    {"x": {"__items__": [[1, 2, 3]]}},
])
def test_a_state_json_that_does_not_fit_is_refused(skeleton, victim):
    replace(victim, "state.json", json.dumps(skeleton).encode())
    refused(victim, "state.json", "does not fit state.safetensors")


def test_deeply_nested_json_is_refused(victim):
    replace(victim, "state.json", b"[" * 100_000 + b"]" * 100_000)
    refused(victim, "state.json", "not valid JSON")


def test_the_cli_refuses_a_tampered_run_with_exit_code_2(good_run, tmp_path, sentinel, capsys):
    run = tmp_path / "run"
    shutil.copytree(good_run, run, symlinks=True)
    newest = checkpoints(run)[-1]
    replace(newest, "model.safetensors", payloads(sentinel)["_load_from_bytes gadget"])
    for argv in (["resume", str(run)], ["evaluate", str(run), "--checkpoint", "last"],
                 ["sample", str(run), "-n", "2", "--out", str(tmp_path / "s.npy"), "--checkpoint", "last"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert f"error: {newest / 'model.safetensors'}: not a valid safetensors file" in err, err
    assert not (tmp_path / "s.npy").exists()


# -- fuzzing the safetensors header --------------------------------------------------------

DTYPES = ["F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL", "F8_E4M3", "F8_E5M2", "F8_E8M0",
          "F8_E4M3FNUZ", "F8_E5M2FNUZ", "F4", "F6_E2M3", "F6_E3M2", "C64", "U64", "U32", "U16", "XX", ""]


@pytest.mark.parametrize("dtype", [d for d in DTYPES if d])
def test_every_safetensors_dtype_is_parsed_and_checked_or_refused(dtype):
    """Some dtypes the format knows have no torch counterpart (``F4`` is a KeyError inside safetensors.torch)."""
    header = {"a": {"dtype": dtype, "shape": [2], "data_offsets": [0, 2]}}
    data = safetensors_bytes(header, b"\xff\xff")
    try:
        tensors = ckpt.parse_safetensors(data, Path("x.safetensors"))
    except CheckpointError as exc:
        assert "x.safetensors: not a valid safetensors file" in str(exc)
        return
    try:
        ckpt.check_finite(tensors, Path("x.safetensors"))
    except CheckpointError as exc:
        assert "non-finite values" in str(exc) and " a" in str(exc)
numbers = st.one_of(st.integers(-5, 64), st.integers(0, 2**64 + 5), st.just(2**63), st.floats(allow_nan=True))
json_values = st.recursive(st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=5)),
                           lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5),
                                                                                              children, max_size=3),
                           max_leaves=8)
entries = st.fixed_dictionaries({
    "dtype": st.sampled_from(DTYPES) | json_values,
    "shape": st.lists(st.integers(0, 6) | st.integers(-3, 2**40), max_size=3) | json_values,
    "data_offsets": st.lists(numbers, min_size=0, max_size=3) | json_values,
})
headers = st.dictionaries(st.text(max_size=6), entries | json_values, max_size=4).map(
    lambda h: h if not h.get("__metadata__") or isinstance(h["__metadata__"], dict) else {**h, "__metadata__": {}})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(header=headers, body=st.binary(max_size=64), length_delta=st.sampled_from([0, 0, 0, -1, 1, 7, -8, 2**40]),
       trailing=st.binary(max_size=4))
def test_fuzzed_safetensors_headers_are_refused_or_parsed_never_crash(header, body, length_delta, trailing):
    raw = json.dumps(header).encode()
    data = struct.pack("<Q", max(len(raw) + length_delta, 0)) + raw + body + trailing
    try:
        tensors = ckpt.parse_safetensors(data, Path("fuzz.safetensors"))
    except CheckpointError as exc:
        assert "fuzz.safetensors: not a valid safetensors file" in str(exc)
    else:
        ckpt.check_finite(tensors, Path("fuzz.safetensors")) if all(t.numel() < 10**6 for t in tensors.values()) \
            else None


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=200))
def test_fuzzed_bytes_are_refused_or_parsed_never_crash(data):
    try:
        ckpt.parse_safetensors(data, Path("fuzz.safetensors"))
    except CheckpointError:
        pass


def test_nan_in_running_metric_sums_is_not_a_reason_to_refuse_a_resume(good_run, tmp_path, registry):
    """A loss term may log a NaN in a step that is then skipped; the run must stay resumable."""
    from reliability_helpers import resume

    run = tmp_path / "run"
    shutil.copytree(good_run, run, symlinks=True)
    newest = checkpoints(run)[-1]
    skeleton = json.loads((newest / "state.json").read_text())
    skeleton["metric_sinks"]["step"]["sums"]["train/diagnostic"] = {"__tensor__": "nan"}
    skeleton["metric_sinks"]["step"]["counts"]["train/diagnostic"] = 1
    tensors = ckpt.parse_safetensors((newest / "state.safetensors").read_bytes(), newest)
    tensors["nan"] = torch.tensor(float("nan"))
    from safetensors.torch import save

    replace(newest, "state.safetensors", save(tensors))
    replace(newest, "state.json", json.dumps(skeleton).encode())
    refused(newest, "state.safetensors", "non-finite values", "metric_sinks.step.sums.train/diagnostic")
    assert ckpt.load_checkpoint(newest, finite_exempt=("metric_sinks",))
    resume(run, registry)  # the trainer loads with that exemption
