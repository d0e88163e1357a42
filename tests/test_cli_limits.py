"""Command-line values a user can ask for: each count, size and scale has a bound derived from
memory, checked before any work; devices must exist; outputs must be writable. Each refusal is
one line and exit code 2."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from numgen import config
from numgen.cli.main import main
from numgen.data import DataError, read_idx
from numgen.hub import PRETRAINED_DIR

GB = 1_000_000_000


@pytest.fixture(autouse=True)
def four_gigabytes_free(monkeypatch) -> None:
    """The same memory on every machine, so the messages are fixed."""
    monkeypatch.setattr(config, "memory_budget", lambda: 4 * GB)


def refusal(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("Error: "), err
    return err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["write", "1" * 64, "--variants", "100", "--height", "1024"],
         "--variants 100 would need about 34.9 GB of memory; at most 4.0 GB is free, enough for --variants 11"),
        (["write", "2026", "--height", "100000"], "--height': Input should be less than or equal to 1024"),
        (["evaluate", "vae2d", "--samples", "1000000000"],
         "--samples 1,000,000,000 would need about 16000.0 GB of memory; at most 4.0 GB is free, enough for --samples 250,000"),
        (["decode", "vae2d", "0", "0", "--scale", "100000"],
         "--scale 100,000 would need about 23520.0 GB of memory; at most 4.0 GB is free, enough for --scale 1,304"),
        (["train", "RUN", "--hidden", "1000000000"], "hidden=1000000000: must lie between 1 and 16,384"),
        (["train", "RUN", "--arch", "mlp", "--hidden", "16000", "--depth", "8", "--dataset", "embedded"],
         "training this model (weights, gradients and Adam state 57.8 GB"),
        (["train", "RUN", "--batch-size", "1000000"], "batch_size=1000000: must lie between 1 and 60,000"),
        (["train", "RUN", "--device", "meta", "--dataset", "embedded"], "unknown device 'meta'"),
        (["train", "RUN", "--device", "cuda:7", "--dataset", "embedded"], "--device cuda:7"),
        (["sample", "vae2d", "--out", "/proc/x.png"], "--out /proc/x.png: cannot write in /proc"),
        (["sample", "vae2d", "--out", "FILE/x.png"], "FILE is a file, not a folder"),
        (["digits", "3", "--out", "FILE/x.png"], "FILE is a file, not a folder"),
        (["evaluate", "vae2d", "--out", "FILE/eval"], "FILE is a file, not a folder"),
        (["dataset", "--count", "5", "--out", "FILE"], "--out FILE: is a file"),
        (["train", "FILE/run"], "FILE is a file, not a folder"),
        (["data", "check", "--dataset", "embedded", "--out", "FILE/x.png"], "FILE is a file"),
    ],
)  # fmt: skip
def test_each_value_out_of_bounds_is_one_line(argv, message, tmp_path: Path, capsys) -> None:
    regular = tmp_path / "a-file"
    regular.write_text("not a folder")
    run = tmp_path / "run"
    argv = [a.replace("FILE", str(regular)).replace("RUN", str(run)) for a in argv]
    message = message.replace("FILE", str(regular))
    assert message in refusal(argv, capsys)
    assert not run.exists()  # refused before any work


def test_nan_weights_are_refused_by_sample_and_decode(tmp_path: Path, capsys) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_bytes((PRETRAINED_DIR / "vae2d" / "config.json").read_bytes())
    weights = load_file(str(PRETRAINED_DIR / "vae2d" / "model.safetensors"))
    weights["decoder.deconv.4.bias"][0] = float("nan")
    save_file(weights, str(model / "model.safetensors"))
    for argv in (["sample", str(model)], ["decode", str(model), "0", "0"]):
        err = refusal([*argv, "--out", str(tmp_path / "x.png")], capsys)
        assert "decoder.deconv.4.bias holds NaN or infinite values" in err
    assert not (tmp_path / "x.png").exists()


def test_a_corrupt_deflate_stream_is_named_like_a_truncated_file(tmp_path: Path) -> None:
    data = bytearray(gzip.compress(bytes(range(256)) * 64))
    data[20:40] = bytes(20)  # inside the deflate stream; the gzip header stays valid
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"not a valid gzip file, damaged or truncated \(Error -3"):
        read_idx(path)
