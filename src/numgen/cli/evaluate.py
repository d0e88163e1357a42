"""Judging models: `numgen evaluate` and `numgen recognizer train`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from numgen.cli.common import (
    DataDir,
    Dataset,
    Device,
    Model,
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
from numgen.recognizer import RecognizerConfig, train_recognizer
from numgen.train import select_device

recognizer_app = command_group("The digit recognizer that judges generated digits.")
app.add_typer(recognizer_app, name="recognizer")

DEFAULTS = EvalConfig()


@app.command("evaluate")
def evaluate_command(
    model: Model,
    out: Annotated[
        Path | None, typer.Option(help="Folder for the report [default: evaluations/<MODEL>].")
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
            help="Also train a recognizer on this many generated digits and test it on real ones "
            "(and one on as many real digits): e.g. 60000. 0 = skip (it trains two networks).",
            min=0,
        ),
    ] = DEFAULTS.tstr,
) -> None:
    """Measure a model (a run or model directory, or a bundled name) and write metrics.json,
    report.md and its pictures: reconstruction, ELBO and IWAE likelihood, k-NN accuracy of the
    latent space, the original grid test (models with a latent), Fréchet distance,
    precision/recall, per-class accuracy, and with --tstr the train-on-synthetic accuracy."""
    # each sample: the generated digit, a real one, their float copies and features
    fits("--samples", samples, lambda n: 16_000 * n)
    data_dir = resolve_data_dir(data_dir)
    config = make_config(
        EvalConfig, samples=samples, iwae_k=iwae_k, iwae_digits=iwae_digits, seed=seed, dataset=dataset,
        data_dir=str(data_dir) if data_dir else None, tstr=tstr,
    )  # fmt: skip
    out = writable(out or Path("evaluations") / Path(model).resolve().name, folder=True)
    with progress_bar("evaluate") as progress:
        task = progress.add_task("loading", total=None, status="")

        def on_progress(stage: str, done: int, total: int) -> None:
            progress.update(task, description=stage, completed=done, total=total)

        metrics = evaluate(model, out, config, device, on_progress)
    likelihood, samples_ = metrics["likelihood"], metrics["samples"]
    recon = "" if likelihood["recon_mse"] is None else f"recon MSE {likelihood['recon_mse']:.2f}, "
    useful = metrics["usefulness"]["generated"]
    console.print(
        f"{recon}Fréchet {samples_['frechet']:.2f} (real digits {metrics['real']['frechet']:.2f}), "
        f"precision {samples_['precision']:.3f}, recall {samples_['recall']:.3f}"
        + ("" if useful is None else f", trained on generated digits: {useful:.2%} on real")
    )
    console.print(f"wrote [green]{out / REPORT_FILE}[/green] and {out / METRICS_FILE}")


@recognizer_app.command("train")
def recognizer_train_command(
    out: Annotated[Path, typer.Option(help="Folder for config.json + model.safetensors.")] = Path(
        "runs/recognizer"
    ),
    epochs: Annotated[int, typer.Option(help="Training epochs.", min=1)] = RecognizerConfig.epochs,
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
    checker with --channels 8 --seed 1."""
    writable(out, "--out", folder=True)
    train = load_digits(dataset, "train", data_dir)
    test = load_digits(dataset, "test", data_dir)
    config = make_config(RecognizerConfig, epochs=epochs, channels=channels, seed=seed)
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
