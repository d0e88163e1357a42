"""Crash safety as a test: a tiny training, and a dataset export, killed with SIGKILL at chosen
points (mid-epoch, inside the checkpoint's write, between its files, before the metrics line)
and resumed end byte-for-byte where an uninterrupted run ends."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from numgen.checkpoints import METRICS_FILE, STATE_FILE, read_metrics
from numgen.cli.main import main

TRAIN = ["--arch", "mlp", "--hidden", "16", "--epochs", "2", "--dataset", "embedded",
         "--limit", "256", "--batch-size", "64", "--device", "cpu"]  # fmt: skip

# Runs numgen's CLI with a kill planted at POINT in EPOCH (the first argv entries).
KILLER = """
import os, signal, sys
import numgen.files as files, numgen.checkpoints as checkpoints, numgen.export.formats as formats
from numgen.models import VAE
point, at = sys.argv[1], int(sys.argv[2])
die = lambda: os.kill(os.getpid(), signal.SIGKILL)
calls = {"loss": 0, "model": 0, "png": 0}

real_save_file = files.save_file
def save_file(tensors, path, metadata=None):
    real_save_file(tensors, path, metadata=metadata)
    if point == "state-write" and (metadata or {}).get("epoch") == str(at):
        with open(path, "r+b") as f:  # the temporary file half written, never renamed
            f.truncate(os.path.getsize(path) // 2)
        die()
files.save_file = save_file

real_save_pretrained = checkpoints.save_pretrained
def save_pretrained(model, run_dir):
    calls["model"] += 1
    if point == "before-model" and calls["model"] == at:
        die()
    real_save_pretrained(model, run_dir)
    if point == "before-metrics" and calls["model"] == at:
        die()
checkpoints.save_pretrained = save_pretrained

real_loss = VAE.loss
def loss(self, *args, **kwargs):
    calls["loss"] += args[0].device.type != "meta"
    if point == "mid-epoch" and calls["loss"] == at:
        die()
    return real_loss(self, *args, **kwargs)
VAE.loss = loss

real_png = formats.save_file
def save_png(path, data):
    calls["png"] += 1
    if point == "export" and calls["png"] == at:
        with open(os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp"), "wb") as f:
            f.write(data[: len(data) // 2])
        die()
    real_png(path, data)
formats.save_file = save_png

from numgen.cli.main import main
sys.exit(main(sys.argv[3:]))
"""


def killed(point: str, at: int, *args: str) -> None:
    done = subprocess.run([sys.executable, "-c", KILLER, point, str(at), *args],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("straight") / "run"
    assert main(["train", str(run), *TRAIN]) == 0
    return run


def tensors(path: Path) -> dict[str, bytes]:
    return {k: v.numpy().tobytes() for k, v in load_file(str(path)).items()}


@pytest.mark.parametrize(
    ("point", "at"),
    [
        ("mid-epoch", 7),  # a loss in epoch 2 (4 training batches and the test set an epoch)
        ("state-write", 2),  # inside the atomic write of epoch 2's training state
        ("state-write", 1),  # the same in epoch 1: nothing to resume, so it starts fresh
        ("before-model", 2),  # training state of epoch 2 written, its model files not
        ("before-metrics", 2),  # all files of the last epoch written, its metrics line not
    ],
)
def test_a_killed_training_resumes_to_the_same_bytes(
    straight: Path, tmp_path: Path, point: str, at: int
) -> None:
    run = tmp_path / "run"
    killed(point, at, "train", str(run), *TRAIN)
    assert main(["train", str(run), "--resume", *TRAIN]) == 0
    assert (run / "model.safetensors").read_bytes() == (straight / "model.safetensors").read_bytes()
    assert (run / "config.json").read_bytes() == (straight / "config.json").read_bytes()
    assert tensors(run / STATE_FILE) == tensors(straight / STATE_FILE)
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2]
    straight_loss = [r["train_loss"] for r in read_metrics(straight)]
    assert [r["train_loss"] for r in read_metrics(run)] == straight_loss
    assert sorted(p.name for p in run.iterdir()) == sorted(p.name for p in straight.iterdir())


def test_resuming_a_finished_run_repairs_its_damaged_model_files(straight, tmp_path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.json", "model.safetensors", STATE_FILE, METRICS_FILE):
        (run / name).write_bytes((straight / name).read_bytes())
    (run / "model.safetensors").write_bytes(b"\0" * 100)
    (run / "config.json").write_text("{")
    assert main(["train", str(run), "--resume", *TRAIN]) == 0  # nothing left to train
    for name in ("config.json", "model.safetensors"):
        assert (run / name).read_bytes() == (straight / name).read_bytes(), name


def test_a_killed_export_resumes_to_the_same_bytes(tmp_path: Path) -> None:
    # PNG files in shards of 64: the kill falls in the second shard, after the first is done
    options = ["--count", "200", "--seed", "3", "--workers", "1", "--format", "png",
               "--shard-size", "64"]  # fmt: skip
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert main(["dataset", *options, "--out", str(full)]) == 0
    killed("export", 100, "dataset", *options, "--out", str(cut))
    assert not (cut / "labels.csv").exists()
    assert main(["dataset", *options, "--out", str(cut), "--resume"]) == 0

    def files(folder: Path) -> dict[str, bytes]:
        return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
                if p.is_file()}  # fmt: skip

    assert files(cut) == files(full)
    assert sum(name.endswith(".png") for name in files(cut)) >= 200  # every image (+ the card's)


def copy_run(source: Path, run: Path) -> dict[str, bytes]:
    """``source``'s files copied into ``run``; returns them."""
    run.mkdir()
    files = {p.name: p.read_bytes() for p in source.iterdir()}
    for name, data in files.items():
        (run / name).write_bytes(data)
    return files


def one_line_refusal(argv: list[str], capsys) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("Error: "), err
    return err


def test_training_again_into_a_run_is_refused_without_resume_or_overwrite(
    straight: Path, tmp_path: Path, capsys
) -> None:
    run = tmp_path / "run"
    files = copy_run(straight, run)
    err = one_line_refusal(["train", str(run), *TRAIN, "--epochs", "1"], capsys)
    assert f"{run} already holds a run" in err and "--resume" in err and "--overwrite" in err
    assert {p.name: p.read_bytes() for p in run.iterdir()} == files  # nothing replaced
    assert main(["train", str(run), *TRAIN, "--epochs", "1", "--overwrite"]) == 0
    assert [r["epoch"] for r in read_metrics(run)] == [1]
    err = one_line_refusal(["train", str(run), *TRAIN, "--resume", "--overwrite"], capsys)
    assert "give one" in err


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--lr", "0.01"], "--lr 0.01 (the run's: 0.001)"),
        (["--seed", "1"], "--seed 1 (the run's: 0)"),
        (["--batch-size", "32"], "--batch-size 32 (the run's: 64)"),
        (["--arch", "conv"], "--arch conv (the run's: mlp)"),
        (["--dataset", "mnist"], "--dataset mnist (the run's: embedded)"),
        (["--model", "cvae"], "--model cvae: the run holds a vae model"),
        (["--channels", "8"], "--channels: not an option of the run's vae model"),
    ],
)
def test_resume_with_an_option_that_differs_from_the_run_is_refused(
    straight: Path, tmp_path: Path, capsys, option: list[str], message: str
) -> None:
    run = tmp_path / "run"
    files = copy_run(straight, run)
    err = one_line_refusal(["train", str(run), "--resume", *TRAIN, *option], capsys)
    assert message in err, err
    assert {p.name: p.read_bytes() for p in run.iterdir()} == files


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--channels", "8"], "--channels: not an option of a vae model"),
        (["--model", "cvae", "--adversarial", "0.3", "--sigma", "0.5"],
         "--adversarial, --sigma: not an option of a cvae model"),
        (["--model", "cvae", "--base", "flow"], "--base: not an option of a cvae model"),
    ],
)  # fmt: skip
def test_a_new_run_refuses_options_of_another_model_family(
    tmp_path: Path, capsys, option: list[str], message: str
) -> None:
    run = tmp_path / "run"
    err = one_line_refusal(["train", str(run), *TRAIN, *option], capsys)
    assert message in err and "choose the --model it belongs to" in err, err
    assert not run.exists() or not any(run.iterdir())  # nothing trained, nothing written


def test_resume_may_raise_the_epochs_and_keeps_the_run_options(
    straight: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    copy_run(straight, run)
    # only --epochs given: the run's own architecture, data and batch size go on
    assert main(["train", str(run), "--resume", "--epochs", "3", "--device", "cpu"]) == 0
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2, 3]


def test_the_next_run_removes_temporary_files_a_killed_write_left(
    straight: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    copy_run(straight, run)
    # safetensors' own temporary name (numgen 0.1.0 let it write one), and files.atomic_write's
    (run / ".tmpAb12Cd").write_bytes(b"\0" * 1000)
    (run / ".model.safetensors.x1y2.tmp").write_bytes(b"\0" * 1000)
    assert main(["train", str(run), "--resume", "--epochs", "3", "--device", "cpu"]) == 0
    assert sorted(p.name for p in run.iterdir()) == sorted(p.name for p in straight.iterdir())
    (run / ".tmpZz98Yx").write_bytes(b"\0" * 1000)
    assert main(["train", str(run), *TRAIN, "--overwrite"]) == 0
    assert sorted(p.name for p in run.iterdir()) == sorted(p.name for p in straight.iterdir())


@pytest.mark.parametrize(
    "bad",
    [
        "REPEAT",  # epoch 1's line again, as a crash can leave it
        '{"epoch": "1"}',
        '{"epoch": null}',
        '{"epoch": [1]}',
        '{"epoch": ' + "[" * 100_000 + "]" * 100_000 + "}",
        '{"epoch": 1' + "0" * 5000 + "}",
    ],
)
def test_resume_keeps_one_metrics_line_per_epoch_whatever_the_file_holds(
    straight: Path, tmp_path: Path, bad: str
) -> None:
    run = tmp_path / "run"
    copy_run(straight, run)
    lines = (run / METRICS_FILE).read_text().splitlines()
    bad = lines[0] if bad == "REPEAT" else bad
    (run / METRICS_FILE).write_text("\n".join([lines[0], bad, *lines[1:]]) + "\n")
    assert main(["plot", "losses", str(run), "--out", str(tmp_path / "losses.png")]) == 0
    assert main(["train", str(run), "--resume", "--epochs", "3", "--device", "cpu"]) == 0
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2, 3]
    kept = (run / METRICS_FILE).read_text().splitlines()[:2]
    assert kept == (straight / METRICS_FILE).read_text().splitlines()


FULL_DISK = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))  # as a disk that fills up
from numgen.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_training_onto_a_full_disk_is_one_line(tmp_path: Path) -> None:
    run = tmp_path / "run"
    wide = [*TRAIN, "--hidden", "64"]  # weights of ~0.5 MB: past the 20 kB the process may write
    done = subprocess.run([sys.executable, "-c", FULL_DISK, "train", str(run), *wide],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    error = [line for line in done.stderr.splitlines() if line.startswith("Error: ")]
    assert len(error) == 1 and "write elsewhere" in error[0], done.stderr[-2000:]
