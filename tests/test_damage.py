"""Damaged run files: every mutation of config.json, model.safetensors and
train_state.safetensors — cut, flipped, retyped, reshaped, keys dropped — ends in one line naming
the file and exit code 2: never a traceback, never a changed file, never gigabytes (fuzzed with
hypothesis, a few seconds in all)."""

from __future__ import annotations

import contextlib
import io
import json
import resource
import shutil
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from numgen.checkpoints import STATE_FILE, read_metrics
from numgen.cli.main import main
from numgen.models import VAEConfig
from numgen.train import TrainConfig, train

CONFIG, WEIGHTS = "config.json", "model.safetensors"
FUZZ = settings(
    max_examples=25, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)  # fmt: skip


@pytest.fixture(scope="module")
def good_run(tmp_path_factory) -> Path:
    """A finished 1-epoch run of a tiny MLP whose config differs from the defaults."""
    run = tmp_path_factory.mktemp("good") / "run"
    config = VAEConfig(arch="mlp", hidden=16, latent_dim=3)
    train(run, config, TrainConfig(epochs=1, dataset="embedded", limit=128, batch_size=64), "cpu")
    (run.parent / "peak_kb").write_text(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
    return run


def command_for(name: str, run: Path) -> list[str]:
    if name == STATE_FILE:  # only --resume reads the training state
        return ["train", str(run), "--resume", "--epochs", "2", "--dataset", "embedded",
                "--device", "cpu"]  # fmt: skip
    return ["sample", str(run), "-n", "4", "--out", str(run.parent / "out.png")]


def outcome(good_run: Path, name: str, data: bytes) -> tuple[int, str]:
    """Copy the run, put ``data`` in its file ``name``, run the command that reads it; assert
    that no file of the run changed; return (exit code, stderr)."""
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        shutil.copytree(good_run, run)
        (run / name).write_bytes(data)
        before = {p.name: p.read_bytes() for p in run.iterdir()}
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main(command_for(name, run))
        assert {p.name: p.read_bytes() for p in run.iterdir()} == before
        assert not (run.parent / "out.png").exists()
        return code, err.getvalue()


def assert_refused(good_run: Path, name: str, data: bytes) -> str:
    code, err = outcome(good_run, name, data)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("Error: ") and name in lines[0], err
    assert "Traceback" not in err
    return lines[0]


def header_length(data: bytes) -> int:
    return 8 + struct.unpack("<Q", data[:8])[0]


def rewritten(path: Path, change: Callable[[dict, dict], None]) -> bytes:
    """The safetensors file at ``path`` with ``change(tensors, metadata)`` applied."""
    tensors = load_file(str(path))
    with open(path, "rb") as f:
        metadata = json.loads(f.read(header_length(path.read_bytes()))[8:]).get("__metadata__")
    metadata = dict(metadata or {})
    change(tensors, metadata)
    with tempfile.TemporaryDirectory() as tmp:
        save_file(tensors, f"{tmp}/x", metadata=metadata or None)
        return Path(f"{tmp}/x").read_bytes()


# --- every file, cut anywhere ------------------------------------------------------------------


@FUZZ
@given(name=st.sampled_from([CONFIG, WEIGHTS, STATE_FILE]), cut=st.floats(0, 0.9999))
def test_a_cut_file_is_named(good_run: Path, name: str, cut: float) -> None:
    data = (good_run / name).read_bytes().rstrip()  # a JSON file's final newline is no loss
    assert_refused(good_run, name, data[: int(cut * len(data))])


# --- config.json -------------------------------------------------------------------------------

WRONG = st.one_of(
    st.booleans(), st.none(), st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.sampled_from([float("nan"), float("inf"), -1, 0.5, 10**12, -(10**9)]),
    st.integers(10**7, 10**18), st.text(min_size=1, max_size=4).map(lambda t: t + "!"),
)  # fmt: skip


@FUZZ
@given(data=st.data())
def test_a_config_with_a_wrong_value_or_a_dropped_key_is_named(good_run: Path, data) -> None:
    config = json.loads((good_run / CONFIG).read_text())
    if data.draw(st.booleans(), "drop"):  # keys whose default differs from this run's value
        del config[data.draw(st.sampled_from(["arch", "hidden", "latent_dim"]), "key")]
    else:
        key = data.draw(st.sampled_from(["kind", "arch", "latent_dim", "likelihood", "beta",
                                         "hidden", "depth", "num_classes"]), "key")  # fmt: skip
        config[key] = data.draw(WRONG, "value")
        if key == "hidden" and config[key] is None:
            config[key] = 0.5  # None is a valid width (the default), and not this run's
    assert_refused(good_run, CONFIG, json.dumps(config).encode())


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"[" * 100_000, "nested deeper"),
        (bytes(range(200, 256)) * 4, "not a text file"),
        (b"{" + b" " * (2 << 20) + b"}", "more than a config can need"),
        (b"[1, 2]", "expected a JSON object"),
        (json.dumps({"kind": "vae", "arch": "mlp", "hidden": 10**12}).encode(), "hidden="),
        (json.dumps({"arch": "mlp", "hidden": 16, "latent_dim": 3, "depth": 2.0}).encode(), "depth=2.0"),
    ],
)  # fmt: skip
def test_hostile_configs_are_named(good_run: Path, data: bytes, message: str) -> None:
    assert message in assert_refused(good_run, CONFIG, data)


# --- model.safetensors -------------------------------------------------------------------------


@FUZZ
@given(data=st.data())
def test_a_flipped_header_byte_is_named(good_run: Path, data) -> None:
    raw = bytearray((good_run / WEIGHTS).read_bytes())
    at = data.draw(st.integers(0, header_length(bytes(raw)) - 1), "at")
    raw[at] ^= data.draw(st.integers(1, 255), "bits")
    assert_refused(good_run, WEIGHTS, bytes(raw))


@FUZZ
@given(data=st.data())
def test_weights_reshaped_dropped_or_not_finite_are_named(good_run: Path, data) -> None:
    names = sorted(load_file(str(good_run / WEIGHTS)))
    name = data.draw(st.sampled_from(names), "tensor")
    how = data.draw(st.sampled_from(["nan", "inf", "reshape", "drop", "dtype"]), "how")

    def change(tensors: dict, metadata: dict) -> None:
        if how in ("nan", "inf"):
            flat = tensors[name].view(-1)
            flat[data.draw(st.integers(0, len(flat) - 1), "index")] = float(how)
        elif how == "reshape":
            tensors[name] = torch.zeros(*(n + 1 for n in tensors[name].shape))
        elif how == "dtype":
            tensors[name] = tensors[name].double()
        else:
            del tensors[name]

    line = assert_refused(good_run, WEIGHTS, rewritten(good_run / WEIGHTS, change))
    assert ("NaN" in line) if how in ("nan", "inf") else ("do not fit" in line and name in line)


@FUZZ
@given(data=st.data())
def test_a_flipped_byte_in_the_model_weights_is_named(good_run: Path, data) -> None:
    raw = bytearray((good_run / WEIGHTS).read_bytes())
    at = data.draw(st.integers(header_length(bytes(raw)), len(raw) - 1), "at")  # in the tensors
    raw[at] ^= data.draw(st.integers(1, 255), "bits")
    assert_refused(good_run, WEIGHTS, bytes(raw))


def test_a_flipped_exponent_bit_that_leaves_the_weights_finite_is_named(good_run: Path) -> None:
    raw = bytearray((good_run / WEIGHTS).read_bytes())
    specs = json.loads(raw[8 : header_length(bytes(raw))])
    name = next(k for k, v in specs.items() if k != "__metadata__" and v["dtype"] == "F32")
    at = header_length(bytes(raw)) + specs[name]["data_offsets"][0] + 3  # the float's top byte
    raw[at] ^= 0x40  # the exponent's top bit: 0.01 becomes about 2.6e36, still finite
    line = assert_refused(good_run, WEIGHTS, bytes(raw))
    assert "the checksum differs" in line


# --- train_state.safetensors -------------------------------------------------------------------


@FUZZ
@given(data=st.data())
def test_a_flipped_byte_anywhere_in_the_training_state_is_named(good_run: Path, data) -> None:
    raw = bytearray((good_run / STATE_FILE).read_bytes())
    at = data.draw(st.integers(0, len(raw) - 1), "at")
    raw[at] ^= data.draw(st.integers(1, 255), "bits")
    line = assert_refused(good_run, STATE_FILE, bytes(raw))
    assert "cannot resume" in line and "model.safetensors still holds the last good model" in line


@FUZZ
@given(data=st.data())
def test_a_training_state_missing_parts_is_named(good_run: Path, data) -> None:
    tensors = sorted(load_file(str(good_run / STATE_FILE)))
    what = data.draw(st.sampled_from(["epoch", "model_config", "train_config", "param_groups",
                                      "tensor", "shape", "retype"]), "what")  # fmt: skip
    name = data.draw(st.sampled_from(tensors), "tensor")
    key = data.draw(st.sampled_from(["epoch", "model_config", "train_config", "param_groups",
                                     "metrics"]), "key")  # fmt: skip
    value = json.dumps(data.draw(WRONG, "value"))

    def change(tensors: dict, metadata: dict) -> None:
        if what == "retype":
            metadata[key] = value
        elif what == "tensor":
            del tensors[name]
        elif what == "shape":
            tensors[name] = torch.zeros(*(n + 1 for n in tensors[name].shape), 2)
        else:
            del metadata[what]

    assert_refused(good_run, STATE_FILE, rewritten(good_run / STATE_FILE, change))


STATE_CASES = {
    "empty": (lambda d: b"", "truncated to 0 bytes"),
    "7 bytes": (lambda d: d[:7], "truncated to 7 bytes"),
    "half": (lambda d: d[: len(d) // 2], "truncated"),
    "last byte cut": (lambda d: d[:-1], "truncated"),
    "zero-filled": (lambda d: bytes(len(d)), "damaged header"),
    "garbage": (lambda d: bytes(range(256)) * 8, "header claims"),
    "absurd header length": (lambda d: struct.pack("<Q", 10**15) + d[8:], "header claims"),
}


@pytest.mark.parametrize("case", STATE_CASES)
def test_each_kind_of_damage_to_the_training_state_is_named(good_run: Path, case: str) -> None:
    damage, kind = STATE_CASES[case]
    line = assert_refused(good_run, STATE_FILE, damage((good_run / STATE_FILE).read_bytes()))
    assert kind in line and "train again without --resume" in line


@pytest.mark.parametrize(
    ("change", "kind"),
    [
        (lambda t, m: m.clear(), "its epoch reads ''"),
        (lambda t, m: m.update(epoch="-5"), "its epoch reads '-5'"),
        (lambda t, m: m.pop("param_groups"), "no 'param_groups'"),
        (lambda t, m: m.update(model_config=json.dumps({"arch": "mlp", "hidden": 32})), "does not fit"),
        (lambda t, m: m.update(train_config=json.dumps({"epochs": 1, "colour": 1})), "unknown config keys"),
    ],
)  # fmt: skip
def test_bad_training_state_metadata_is_named_and_keeps_the_metrics(
    good_run: Path, change, kind: str
) -> None:
    assert kind in assert_refused(good_run, STATE_FILE, rewritten(good_run / STATE_FILE, change))
    assert [r["epoch"] for r in read_metrics(good_run)] == [1]


def test_the_fuzzing_stayed_within_a_few_hundred_megabytes(good_run: Path) -> None:
    """Runs after the fuzz tests of this module: their peak memory (the process's high-water
    mark, in kB on Linux) stayed within a few hundred MB of what training the tiny run took."""
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert peak_kb - int((good_run.parent / "peak_kb").read_text()) < 400_000
