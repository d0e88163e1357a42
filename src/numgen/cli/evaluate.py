"""Judging models: `numgen evaluate` and `numgen recognizer train`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from numgen.cli.common import (
    DataDir,
    Dataset,
    Device,
    Seed,
    app,
    command_group,
    console,
    make_config,
    progress_bar,
    writable,
)
from numgen.config import fits
from numgen.data import load_digits, resolve_data_dir
from numgen.evaluate import METRICS_FILE, REPORT_FILE, EvalConfig, evaluate
from numgen.evaluate_folder import evaluate_folder
from numgen.files import write_json
from numgen.recognizer import RecognizerConfig, train_recognizer
from numgen.train import select_device

recognizer_app = command_group("The digit recognizer that judges generated digits.")
app.add_typer(recognizer_app, name="recognizer")

DEFAULTS = EvalConfig()


@app.command("evaluate")
def evaluate_command(
    model: Annotated[
        str | None,
        typer.Argument(help="A run/model directory or a bundled model name (or use --images)."),
    ] = None,
    images: Annotated[
        Path | None,
        typer.Option(
            help="Measure the digits in this dataset folder instead of a model: any layout numgen "
            "dataset writes, or per-class subfolders of images (0/, 1/ ...) made by any tool.",
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="With --images: print the figures as one JSON object.")
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Folder for the report [default: evaluations/<MODEL>]; with --images, "
            "metrics.json is written there only if given."
        ),
    ] = None,
    iwae_k: Annotated[
        int, typer.Option(help="Importance samples per digit for the IWAE NLL.", min=1)
    ] = DEFAULTS.iwae_k,
    iwae_digits: Annotated[
        int, typer.Option(help="Random test digits that get an IWAE estimate.", min=2)
    ] = DEFAULTS.iwae_digits,
    samples: Annotated[
        int, typer.Option(help="Generated digits for sample quality.", min=4)
    ] = DEFAULTS.samples,
    seed: Seed = DEFAULTS.seed,
    dataset: Dataset = DEFAULTS.dataset,
    data_dir: DataDir = None,
    device: Device = "auto",
    tstr: Annotated[
        int,
        typer.Option(
            help="Also train a recognizer on this many generated digits (with --images: up to "
            "this many of the folder's digits) and test it on real ones (and one on as many real "
            "digits): e.g. 60000. 0 = skip (it trains two networks).",
            min=0,
        ),
    ] = DEFAULTS.tstr,
    raw: Annotated[
        bool,
        typer.Option(
            "--raw",
            help="Also measure the raw model (styles at temperature 1, no legibility check) "
            "beside the model as shipped.",
        ),
    ] = DEFAULTS.raw,
    draws: Annotated[
        int,
        typer.Option(
            help="Measure sample quality on this many independent draws (seeds SEED, SEED + 1, "
            "...) and give each figure's mean ± standard deviation: one draw of 10,000 digits "
            "moves the Fréchet distance by a few hundredths.",
            min=1,
            max=100,
        ),
    ] = DEFAULTS.draws,
) -> None:
    """Measure a model (a run or model directory, or a bundled name) as shipped and write
    metrics.json, report.md and its pictures: reconstruction, ELBO and IWAE likelihood, k-NN
    accuracy of the latent space, the original grid test (models with a latent); digits drawn as
    `numgen digits` draws them (the model's temperature, sampler and legibility check, with its
    redraw rate) read by two judges: recognised shares, Fréchet distance in both judges'
    features, precision/recall, per-class accuracy; with --raw the raw model's beside them, with
    --tstr the train-on-synthetic accuracy.

    With --images DIR instead of MODEL: the digits of a dataset folder (single digits measured
    directly, numbers cut at their boxes or segmented), read by both judges against MNIST's test
    digits beside real digits passed through the same reading path (the floor)."""
    if (model is None) == (images is None):
        raise typer.BadParameter("give a MODEL or --images DIR (one of them)", param_hint="MODEL")
    if images is not None:
        images_command(images, out, json_output, tstr, seed, dataset, data_dir)
        return
    # each sample: the generated digit, a real one, their float copies and features
    fits("--samples", samples, lambda n: 16_000 * n)
    data_dir = resolve_data_dir(data_dir)
    config = make_config(
        EvalConfig, samples=samples, iwae_k=iwae_k, iwae_digits=iwae_digits, seed=seed, dataset=dataset,
        data_dir=str(data_dir) if data_dir else None, tstr=tstr, raw=raw, draws=draws,
    )  # fmt: skip
    out = writable(out or Path("evaluations") / Path(model).resolve().name, folder=True)
    with progress_bar("evaluate") as progress:
        task = progress.add_task("loading", total=None, status="")

        def on_progress(stage: str, done: int, total: int) -> None:
            progress.update(task, description=stage, completed=done, total=total)

        metrics = evaluate(model, out, config, device, on_progress)
    for line in summary(metrics):
        console.print(line, soft_wrap=True)
    console.print(f"wrote [green]{out / REPORT_FILE}[/green] and {out / METRICS_FILE}")


def images_command(
    folder: Path, out: Path | None, json_output: bool, tstr: int, seed: int, dataset: str,
    data_dir: Path | None,
) -> None:  # fmt: skip
    """``numgen evaluate --images``: measure a folder, print its figures (or one JSON object)."""
    if out is not None:
        writable(out, folder=True)
    data_dir = resolve_data_dir(data_dir)
    if tstr:
        fits("--tstr", tstr, lambda n: 8_000 * n)  # the digits as uint8 and float, twice
    with progress_bar("evaluate") as progress:
        progress.add_task(f"reading {folder}", total=None, status="")
        figures = evaluate_folder(
            folder, tstr, seed, dataset=dataset, data_dir=str(data_dir) if data_dir else None
        )
    if out is not None:
        write_json(out / METRICS_FILE, figures)
    if json_output:
        print(json.dumps(figures))
        return
    for line in folder_summary(figures):
        console.print(line, soft_wrap=True)


def folder_summary(f: dict) -> list[str]:
    """The headline figures of :func:`evaluate_folder`, a line each."""
    paths = ", ".join(f"{n:,} {path}" for path, n in f["paths"].items())
    lines = [
        f"{f['folder']}: {f['layout']} layout, {f['images']:,} images ({paths}), "
        f"{f['digits']:,} digits",
        f"recognised {f['recognised']:.2%} (second judge {f['recognised_second']:.2%}); "
        f"real digits read the same way {f['real']['recognised']:.2%} "
        f"({f['real']['recognised_second']:.2%})",
    ]
    if f["numbers_read_back"] is not None:
        lines.append(
            f"numbers read back {f['numbers_read_back']:.2%} (second judge "
            f"{f['numbers_read_back_second']:.2%}); real {f['real']['numbers_read_back']:.2%}"
        )
    lines.append(
        f"Fréchet {f['frechet']:.3f} (floor {f['frechet_floor']:.3f}); in the second judge's "
        f"features {f['frechet_second']:.3f} (floor {f['frechet_second_floor']:.3f})"
    )
    lines.append(
        f"precision {f['precision']:.3f}, recall {f['recall']:.3f} (real: "
        f"{f['real']['precision']:.3f}, {f['real']['recall']:.3f})"
    )
    if "tstr" in f:
        lines.append(
            f"trained on {f['tstr_digits']:,} of its digits: {f['tstr']:.2%} on real test digits "
            f"(on as many real digits: {f['tstr_real']:.2%})"
        )
    return lines


def summary(metrics: dict) -> list[str]:
    """The evaluation's headline figures, a line per set of digits measured."""
    likelihood = metrics["likelihood"]
    lines = [] if likelihood["recon_mse"] is None else [f"recon MSE {likelihood['recon_mse']:.2f}"]
    drawn = metrics["settings"]["drawn"]
    sets = {f"as shipped (temperature {drawn['temperature']}, check {drawn['check']})": "samples"}
    sets |= {"raw model (temperature 1, no check)": "raw", "real digits": "real"}
    draws = metrics["settings"].get("draws", 1)
    for name, key in sets.items():
        m = metrics.get(key)
        if not m:
            continue
        sd = (metrics.get("spread") or {}).get(key) or {}
        plus_minus = {k: "" if sd.get(k) is None else f" ± {sd[k]:{spec}}"
                      for k, spec in (("frechet", ".2f"), ("recall", ".3f"))}  # fmt: skip
        line = f"{name}{f', mean of {draws} draws' if draws > 1 else ''}: "
        if m["recognised"] is not None:
            line += f"recognised {m['recognised']:.2%} / {m['recognised_second']:.2%} (2nd judge), "
        line += (
            f"Fréchet {m['frechet']:.2f}{plus_minus['frechet']} / "
            f"{m['frechet_second']:.2f} (2nd judge), "
            f"precision {m['precision']:.3f}, recall {m['recall']:.3f}{plus_minus['recall']}"
        )
        if m.get("redraw_rate") is not None:
            line += f", styles redrawn per digit {m['redraw_rate']:.4f}"
        lines.append(line)
    useful = metrics["usefulness"]["generated"]
    if useful is not None:
        lines.append(f"trained on generated digits: {useful:.2%} on real")
    return lines


@recognizer_app.command("train")
def recognizer_train_command(
    out: Annotated[Path, typer.Option(help="Folder for config.json + model.safetensors.")] = Path(
        "runs/recognizer"
    ),
    epochs: Annotated[int, typer.Option(help="Training epochs.", min=1)] = RecognizerConfig.epochs,
    arch: Annotated[
        str,
        typer.Option(help="Architecture: cnn (the judge's) or resnet (the second judge's)."),
    ] = RecognizerConfig.arch,
    channels: Annotated[
        int, typer.Option(help="Channels of the first conv block (the second has twice).", min=1)
    ] = RecognizerConfig.channels,
    seed: Seed = RecognizerConfig.seed,
    dataset: Dataset = "mnist",
    data_dir: DataDir = None,
    device: Device = "auto",
) -> None:
    """Train the digit recognizer (the judge of `numgen evaluate`) and save it. The bundled one
    was made with the defaults on full MNIST (99.60 % test accuracy); the bundled legibility
    checker with --channels 8 --seed 1, the bundled second judge (judge2) with --arch resnet
    --seed 2."""
    writable(out, "--out", folder=True)
    train = load_digits(dataset, "train", data_dir)
    test = load_digits(dataset, "test", data_dir)
    config = make_config(RecognizerConfig, arch=arch, epochs=epochs, channels=channels, seed=seed)
    with progress_bar("recognizer") as progress:
        task = progress.add_task("epoch 1", total=epochs, status="")

        def on_epoch(row: dict) -> None:
            progress.update(task, completed=row["epoch"], description=f"epoch {row['epoch'] + 1}")
            progress.console.print(
                f"epoch {row['epoch']}: loss {row['train_loss']:.4f}, "
                f"test accuracy {row['test_accuracy']:.2%}, {row['seconds']:.0f} s"
            )

        model, metrics = train_recognizer(train, test, config, select_device(device), on_epoch)
    model.save_pretrained(out)
    console.print(
        f"test accuracy {metrics['test_accuracy']:.2%}; recognizer saved in [green]{out}[/green]"
    )
