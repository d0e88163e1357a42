"""The numgen command: each command writes its picture; bad input gives one line and exit 2."""

import contextlib
import errno
import io
import json
import logging
import re
import sys
from pathlib import Path

import pytest
from PIL import Image
from safetensors import safe_open

from numgen.checkpoints import STATE_FILE
from numgen.cli.main import main


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, str]:
    """A tiny run trained by the command, and what the command printed to stderr (the epochs)."""
    run = tmp_path_factory.mktemp("cli") / "run"
    printed = io.StringIO()
    with contextlib.redirect_stderr(printed):
        code = main(["train", str(run), "--arch", "mlp", "--hidden", "32", "--epochs", "2",
                     "--dataset", "embedded", "--limit", "256", "--kl-warmup", "1.5",
                     "--device", "cpu"])  # fmt: skip
    assert code == 0
    return run, printed.getvalue()


@pytest.fixture(scope="module")
def run_dir(trained: tuple[Path, str]) -> Path:
    return trained[0]


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def test_train_prints_each_epoch_and_saves_the_model(trained: tuple[Path, str]) -> None:
    run_dir, printed = trained
    assert (run_dir / "model.safetensors").is_file()
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    printed = " ".join(printed.split())  # the console wraps long lines
    number = r"(\d+\.\d\d)"
    epoch_line = re.compile(
        rf"epoch (\d): train {number} \(recon {number}, kl {number}\) "
        rf"test {number} \(recon {number}, kl {number}\) \d+\.\d s"
    )
    lines = epoch_line.findall(printed)
    assert [int(line[0]) for line in lines] == [1, 2]
    for line, record in zip(lines, records, strict=True):  # the figures of metrics.jsonl
        keys = ("train_loss", "train_recon", "train_kl", "test_loss", "test_recon", "test_kl")
        assert [float(x) for x in line[1:7]] == [round(record[k], 2) for k in keys]


def test_train_kl_warmup_option_reaches_the_training_config(run_dir: Path) -> None:
    with safe_open(str(run_dir / STATE_FILE), "pt") as state:
        assert json.loads(state.metadata()["train_config"])["kl_warmup"] == 1.5


def test_decode_writes_an_upscaled_digit(run_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "seven.png"
    assert main(["decode", str(run_dir), "-0.5", "1.5", "--out", str(out), "--scale", "4"]) == 0
    assert png_size(out) == (112, 112)
    assert str(out) in capsys.readouterr().out


def test_sample_writes_a_grid(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "samples.png"
    assert main(["sample", str(run_dir), "-n", "16", "--out", str(out)]) == 0
    side = (4 * 30 + 2) * 3  # 4×4 digits of 28 px with 2 px gaps, enlarged 3 times
    assert png_size(out) == (side, side)


@pytest.mark.parametrize(
    "args",
    [
        ["manifold", "--n", "5", "--range", "-1", "1"],
        ["reconstruct", "-n", "6", "--dataset", "embedded"],
        ["plot", "latent", "--dataset", "embedded", "--limit", "300"],
    ],
)
def test_picture_commands_write_pngs(run_dir: Path, tmp_path: Path, args: list[str]) -> None:
    out = tmp_path / "picture.png"
    command = args[:2] if args[0] == "plot" else args[:1]
    assert main([*command, str(run_dir), *args[len(command) :], "--out", str(out)]) == 0
    width, height = png_size(out)
    assert width > 200 and height > 100


def test_plot_losses(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "losses.png"
    assert main(["plot", "losses", str(run_dir), "--out", str(out)]) == 0
    assert png_size(out)[0] > 600


def test_data_check_on_the_embedded_digits(tmp_path: Path, capsys) -> None:
    out = tmp_path / "sample.png"
    assert main(["data", "check", "--dataset", "embedded", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "4000" in text and "1000" in text
    assert png_size(out) == ((10 * 30 + 2) * 3, (10 * 30 + 2) * 3)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--epochs", "0"], "epochs=0"),
        (["train", "--arch", "rnn"], "arch='rnn'"),
        (["train", "--kl-warmup", "-1"], "kl_warmup=-1.0"),
        (
            ["sample", "RUN", "--out", "FILE/sub/x.png"],
            "is a file, not a folder",
        ),
        (["train", "--epochs", "many"], "Invalid value for '--epochs'"),
        (["decode", "nowhere", "0", "0"], "nowhere: no such directory"),
        (["sample", "RUN", "-n", "0"], "Invalid value for '-n'"),
        (["decode", "RUN", "0.5"], "latent has 2 coordinates, got 1"),
        (["decode", "RUN", "0.5", "nan"], "coordinates must be finite"),
        (["manifold", "RUN", "--range", "1", "-1"], "low end must be below"),
        (["frobnicate"], "No such command"),
        (["data", "check", "--data-dir", "nowhere"], "nowhere"),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(
    run_dir: Path, tmp_path: Path, capsys, args: list[str], message: str
) -> None:
    (tmp_path / "file").write_text("a file, not a folder")
    args = [str(run_dir) if a == "RUN" else a.replace("FILE", str(tmp_path / "file")) for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error: ") and message in err
    assert len(err.splitlines()) == 1
    assert "Traceback" not in err


def test_a_bug_keeps_its_traceback(run_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """Only numgen's user errors and the OS errors a user can fix become one line: a ValueError
    or an unexplained OSError inside a command is a bug, and propagates with its traceback."""

    def broken(*args, **kwargs):
        raise ValueError("a bug in numgen")

    def failing_disk(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    args = ["sample", str(run_dir), "--out", str(tmp_path / "x.png")]
    with monkeypatch.context() as patch:
        patch.setattr("numgen.generate.sample", broken)
        with pytest.raises(ValueError, match="a bug in numgen"):
            main(args)
    with monkeypatch.context() as patch:
        patch.setattr("numgen.plots.save_grid", failing_disk)
        with pytest.raises(OSError, match="Input/output error"):
            main(args)


def test_serve_without_the_web_extra_says_how_to_install_it(monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if uvicorn were not installed
    assert main(["serve"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "Error: numgen serve needs the web extra (uvicorn is not installed): "
        "pip install 'numgen[web]'"
    )


def test_verbose_shows_numgen_log_messages(tmp_path: Path, caplog) -> None:
    args = ["data", "check", "--dataset", "embedded", "--out", str(tmp_path / "sample.png")]
    assert main(args) == 0
    assert not [r for r in caplog.records if r.levelno == logging.INFO]
    assert main(["--verbose", *args]) == 0
    info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any("4000 digits" in message for message in info), info
    caplog.clear()
    assert main(["-v", *args]) == 0 and caplog.records
    assert main(args) == 0  # and back to warnings only
    assert logging.getLogger("numgen").getEffectiveLevel() == logging.WARNING


def test_help_on_every_command(capsys) -> None:
    commands = ["train", "decode", "manifold", "sample", "reconstruct", "demo", "data check",
                "data download", "plot latent", "plot losses"]  # fmt: skip
    for command in [[], *(c.split() for c in commands)]:
        assert main([*command, "--help"]) == 0
    assert "Usage: numgen" in capsys.readouterr().out


@pytest.mark.slow  # trains the conv VAE on 4,000 digits: minutes on a busy 2-core machine
def test_demo_writes_the_report_and_every_picture(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--epochs", "1", "--device", "cpu"]) == 0
    report = (out / "report.md").read_text()
    for picture in (
        "latent",
        "decode",
        "manifold",
        "samples",
        "reconstructions",
        "losses",
        "data_sample",
    ):
        assert (out / f"{picture}.png").is_file()
        assert f"({picture}.png)" in report
    assert (out / "run" / "model.safetensors").is_file()
