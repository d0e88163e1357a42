"""The numgen command: each command writes its picture; bad input gives one line and exit 2."""

from pathlib import Path

import pytest
from PIL import Image

from numgen.cli import main


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("cli") / "run"
    code = main(["train", str(run), "--arch", "mlp", "--hidden", "32", "--epochs", "2",
                 "--dataset", "embedded", "--limit", "256", "--device", "cpu"])  # fmt: skip
    assert code == 0
    return run


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def test_train_prints_each_epoch_and_saves_the_model(run_dir: Path) -> None:
    assert (run_dir / "model.safetensors").is_file()
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 2


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
    run_dir: Path, capsys, args: list[str], message: str
) -> None:
    args = [str(run_dir) if a == "RUN" else a for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error: ") and message in err
    assert len(err.splitlines()) == 1
    assert "Traceback" not in err


def test_help_on_every_command(capsys) -> None:
    commands = ["train", "decode", "manifold", "sample", "reconstruct", "demo", "data check",
                "data download", "plot latent", "plot losses"]  # fmt: skip
    for command in [[], *(c.split() for c in commands)]:
        assert main([*command, "--help"]) == 0
    assert "Usage: numgen" in capsys.readouterr().out


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
