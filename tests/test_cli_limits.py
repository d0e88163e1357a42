"""Command-line values a user can ask for: each count, size and scale has a bound derived from
memory, checked before any work; devices must exist; outputs must be writable. Each refusal is
one line and exit code 2."""

from __future__ import annotations

import gzip
import os
import shutil
import socket
import subprocess
import sys
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


def test_finite_weights_that_overflow_write_no_black_png(tmp_path: Path, capsys) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_bytes((PRETRAINED_DIR / "vae2d" / "config.json").read_bytes())
    weights = load_file(str(PRETRAINED_DIR / "vae2d" / "model.safetensors"))
    weights = {k: v * 1e30 if v.is_floating_point() else v for k, v in weights.items()}
    save_file(weights, str(model / "model.safetensors"))  # finite, and no checksum (as bundled)
    for argv in (["sample", str(model)], ["decode", str(model), "0", "0"],
                 ["manifold", str(model), "--n", "3"]):  # fmt: skip
        err = refusal([*argv, "--out", str(tmp_path / "x.png")], capsys)
        assert "NaN or infinite pixels" in err and "weights overflow" in err
    assert not (tmp_path / "x.png").exists()


def test_a_corrupt_deflate_stream_is_named_like_a_truncated_file(tmp_path: Path) -> None:
    data = bytearray(gzip.compress(bytes(range(256)) * 64))
    data[20:40] = bytes(20)  # inside the deflate stream; the gzip header stays valid
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"not a valid gzip file, damaged or truncated \(Error -3"):
        read_idx(path)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["sample", "vae2d", "--seed", "-1", "--out", "OUT/x.png"], "'--seed'"),
        (["sample", "vae2d", "--seed", str(2**64), "--out", "OUT/x.png"], "'--seed'"),
        (["write", "12", "--model", "cvae", "--style-seed", "-5", "--out", "OUT/x.png"], "'--style-seed'"),
        (["write", "12", "--model", "cvae", "--seed", str(2**64), "--out", "OUT/x.png"], "'--seed'"),
        (["sample", "vae2d", "--out", "OUT/o"], "--out OUT/o: end the name in .png"),
        (["sample", "vae2d", "--out", "/dev/full"], "--out /dev/full: end the name in .png"),
        (["digits", "3", "--model", "cvae", "--out", "OUT/" + "a" * 300 + ".png"], "a name of 304 bytes"),
        (["sample", "cvae", "--label", "10", "--out", "OUT/x.png"], "--label: 10: give a digit 0-9"),
        (["decode", "cvae", *["0"] * 16, "--label", "11", "--out", "OUT/x.png"], "--label: 11: give a digit 0-9"),
        (["sample", "vae2d", "--label", "3", "--out", "OUT/x.png"], "vae2d is a vae model, not conditioned on the digit"),
        (["decode", "vae2d", "0", "0", "--label", "3", "--out", "OUT/x.png"], "not conditioned on the digit"),
        (["serve", "--threads", "1000000"], "'--threads'"),
        (["serve", "--host", ""], "--host: give an address"),
        (["serve", "--precision", "fp16"], "precision='fp16': choose one of fp32, bf16"),
        (["dataset", "--count", "5", "--split", "../up=1", "--out", "OUT/d"], "split '../up=1': give name=share"),
        (["dataset", "--count", "5", "--length", "\u0663", "--out", "OUT/d"], "length '\u0663'"),
    ],
)  # fmt: skip
def test_each_fault_case_is_one_line_before_any_work(argv, message, tmp_path: Path, capsys) -> None:
    argv = [a.replace("OUT", str(tmp_path)) for a in argv]
    assert message.replace("OUT", str(tmp_path)) in refusal(argv, capsys)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_serve_on_a_taken_port_is_one_line_not_exit_3(capsys) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        err = refusal(["serve", "--port", str(port), "--no-access-log"], capsys)
    assert f"cannot listen on 127.0.0.1 port {port}" in err


def test_a_style_from_a_fifo_is_refused_not_read(tmp_path: Path) -> None:
    fifo = tmp_path / "style.png"
    os.mkfifo(fifo)
    done = subprocess.run(
        [sys.executable, "-m", "numgen", "write", "12", "--model", "cvae", "--style-from",
         str(fifo), "--out", str(tmp_path / "x.png")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    assert "not a regular file" in done.stderr and "Traceback" not in done.stderr


def test_a_ray_address_that_does_not_answer_is_refused_in_time(tmp_path: Path, capsys) -> None:
    pytest.importorskip("ray")
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    argv = ["dataset", "--count", "5", "--engine", "ray", "--ray-address", f"127.0.0.1:{port}",
            "--out", str(tmp_path / "d")]  # fmt: skip
    assert "no Ray head answered" in refusal(argv, capsys)


def test_an_export_larger_than_the_free_disk_is_refused_up_front(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(GB, GB, GB))
    argv = ["dataset", "--count", "100000", "--height", "1024", "--out", str(tmp_path / "d")]
    err = refusal(argv, capsys)
    assert "100,000 images of height 1024 need about" in err and "1.0 GB free" in err
    assert not (tmp_path / "d").exists()


def test_a_config_integer_of_5000_digits_is_one_line(tmp_path: Path, capsys) -> None:
    model = tmp_path / "model"
    model.mkdir()
    config = (PRETRAINED_DIR / "vae2d" / "config.json").read_text()
    (model / "config.json").write_text(
        config.replace('"latent_dim": 2', '"latent_dim": 1' + "0" * 5000)
    )
    (model / "model.safetensors").write_bytes(
        (PRETRAINED_DIR / "vae2d" / "model.safetensors").read_bytes()
    )
    err = refusal(["sample", str(model), "--out", str(tmp_path / "x.png")], capsys)
    assert "config.json" in err and "not valid JSON" in err
