"""The ``numgen`` command: thin Typer commands over the Python API, with Rich output.

Bad arguments and bad input files end with one line on stderr and exit code 2 — never a
traceback (see :func:`main`).
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from numgen import generate, plots
from numgen.data import (
    DataError,
    check,
    check_files,
    download_mnist,
    load_digits,
    resolve_data_dir,
    verify_checksums,
)
from numgen.hub import ModelError, load
from numgen.models import VAEConfig
from numgen.train import TrainConfig, TrainingError, read_metrics, train

console = Console()
err_console = Console(stderr=True)


def show_help_without_command(ctx: typer.Context) -> None:
    """`numgen`, `numgen data`, ... alone print their help (and exit 0)."""
    if ctx.invoked_subcommand is None:
        console.print(ctx.get_help())


def command_group(help: str) -> typer.Typer:
    group = typer.Typer(
        help=help, add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None,
        invoke_without_command=True, callback=show_help_without_command,
    )  # fmt: skip
    return group


app = command_group(
    "Handwritten digits and numbers from variational autoencoders trained on MNIST."
)
data_app = command_group("Get and check MNIST.")
plot_app = command_group("Pictures of a trained model.")
app.add_typer(data_app, name="data")
app.add_typer(plot_app, name="plot")

# Errors that mean "your input is wrong": one line, exit 2.
USER_ERRORS = (DataError, ModelError, TrainingError, ValueError, FileExistsError)

# Options shared by several commands.
DataDir = Annotated[
    Path | None, typer.Option(help="Folder with the four MNIST IDX files [env: NUMGEN_DATA_DIR].")
]
Dataset = Annotated[
    str, typer.Option(help="'mnist' (IDX files, downloaded if absent) or 'embedded' (offline).")
]
Seed = Annotated[int, typer.Option(help="Random seed: the same seed gives the same output.")]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")]
Model = Annotated[str, typer.Argument(help="A run/model directory or a bundled model name.")]


def choice(value: str, allowed: tuple[str, ...], name: str) -> str:
    if value not in allowed:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(allowed)}", param_hint=name)
    return value


@contextmanager
def progress_bar(description: str) -> Iterator[Progress]:
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, transient=True) as progress:
        yield progress


def out_path(path: Path) -> Path:
    console.print(f"wrote [green]{path}[/green]")
    return path


# --- data ----------------------------------------------------------------------------------------


@data_app.command("download")
def data_download(
    cache_dir: Annotated[Path | None, typer.Option(help="Where to keep the files.")] = None,
) -> None:
    """Download the four MNIST files from public mirrors, checking their MD5 sums."""
    with progress_bar("download") as progress:
        tasks: dict[str, int] = {}

        def report(name: str, done: int, total: int | None) -> None:
            if name not in tasks:
                tasks[name] = progress.add_task(name, total=total, status="")
            progress.update(tasks[name], completed=done)

        directory = download_mnist(cache_dir, progress=report)
    console.print(f"MNIST is in [green]{directory}[/green]")


@data_app.command("check")
def data_check(
    data_dir: DataDir = None,
    dataset: Dataset = "mnist",
    out: Annotated[Path, typer.Option(help="Where to save the sample grid.")] = Path(
        "data_sample.png"
    ),
) -> None:
    """Check MNIST: files, checksums, shapes, value and label ranges, balance, empty and
    duplicate images; save a sample grid."""
    choice(dataset, ("mnist", "embedded"), "--dataset")
    directory = resolve_data_dir(data_dir)
    if dataset == "mnist" and directory is not None:
        files = Table("file", "bytes", "md5", "status", title=f"MNIST files in {directory}")
        for name, info in check_files(directory).items():
            colour = "green" if info["status"] == "ok" else "red"
            size = "" if info["bytes"] is None else f"{info['bytes']:,}"
            files.add_row(name, size, info["md5"] or "", f"[{colour}]{info['status']}")
        console.print(files)
        verify_checksums(directory)  # a wrong MD5 stops here with the file's name
    splits = {split: load_digits(dataset, split, directory) for split in ("train", "test")}
    report = check(splits)
    figures = report["splits"]
    table = Table("check", *splits, title=f"{dataset} digits")
    for key in ("count", "image_shape", "dtype", "pixel_min", "pixel_max", "label_min", "label_max",
                "balance", "empty_images", "duplicate_images"):  # fmt: skip
        table.add_row(key, *(str(figures[s][key]) for s in splits))
    table.add_row(
        "class counts 0-9", *(" ".join(map(str, figures[s]["class_counts"])) for s in splits)
    )
    console.print(table)
    for pair, count in report["shared"].items():
        console.print(f"images in both {pair}: {count}")
    out_path(plots.save_grid(splits["train"].images[:100], out, 10, 3))


# --- training ------------------------------------------------------------------------------------


@app.command("train")
def train_command(
    run: Annotated[Path, typer.Argument(help="Run directory for checkpoints and logs.")] = Path(
        "runs/vae"
    ),
    model: Annotated[str, typer.Option(help="vae or cvae (conditioned on the digit).")] = "vae",
    arch: Annotated[str, typer.Option(help="conv (Keras example) or mlp.")] = "conv",
    latent_dim: Annotated[int, typer.Option(help="Size of the latent space.")] = 2,
    likelihood: Annotated[str, typer.Option(help="mse (original project) or bernoulli.")] = "mse",
    beta: Annotated[float, typer.Option(help="Weight of the KL term.")] = 1.0,
    hidden: Annotated[
        int | None, typer.Option(help="Dense width (default 16 conv, 400 mlp).")
    ] = None,
    epochs: Annotated[int, typer.Option(help="Epochs to train (in total, when resuming).")] = 10,
    batch_size: Annotated[int, typer.Option(help="Minibatch size.")] = 128,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-3,
    seed: Seed = 0,
    dataset: Dataset = "mnist",
    data_dir: DataDir = None,
    limit: Annotated[int | None, typer.Option(help="Use only the first N training digits.")] = None,
    device: Device = "auto",
    resume: Annotated[bool, typer.Option(help="Continue from the run's last checkpoint.")] = False,
) -> None:
    """Train a VAE. The defaults are the original project: 2-D latent, conv, MSE, 10 epochs."""
    model_config = VAEConfig(
        kind=model,
        arch=arch,
        latent_dim=latent_dim,
        likelihood=likelihood,
        beta=beta,
        hidden=hidden,
    )
    data_dir = resolve_data_dir(data_dir)
    train_config = TrainConfig(
        epochs, batch_size, lr, seed, dataset, str(data_dir) if data_dir else None, limit
    )
    with progress_bar("train") as progress:
        task = progress.add_task("epoch", total=None, status="")

        def on_batch(done: int, total: int, loss: float) -> None:
            progress.update(task, completed=done, total=total, status=f"loss {loss:.2f}")

        def on_epoch(r: dict) -> None:
            progress.update(task, description=f"epoch {r['epoch'] + 1}")
            progress.console.print(
                f"epoch {r['epoch']}: train {r['train_loss']:.2f} (recon {r['train_recon']:.2f}, "
                f"KL {r['train_kl']:.2f})  test {r['test_loss']:.2f} (recon {r['test_recon']:.2f}, "
                f"KL {r['test_kl']:.2f})  {r['seconds']:.1f} s"
            )

        train(
            run,
            model_config,
            train_config,
            device=device,
            resume=resume,
            on_batch=on_batch,
            on_epoch=on_epoch,
        )
    console.print(f"model saved in [green]{run}[/green]; metrics in {run / 'metrics.jsonl'}")


# --- the original project's pictures -------------------------------------------------------------


@plot_app.command("latent")
def plot_latent_command(
    model: Model,
    out: Annotated[Path, typer.Option(help="PNG to write.")] = Path("latent.png"),
    dataset: Dataset = "mnist",
    data_dir: DataDir = None,
    limit: Annotated[int | None, typer.Option(help="Plot only the first N test digits.")] = None,
) -> None:
    """Test-set encodings in the latent plane, coloured by digit (PCA beyond 2-D)."""
    vae = load(model)
    test = load_digits(dataset, "test", data_dir)
    test = test.subset(limit) if limit else test
    z = generate.encode(vae, test.images, test.labels if vae.conditional else None)
    points, axes = generate.project_2d(z)
    out_path(plots.plot_latent(points, test.labels, out, axes))


@app.command("decode", context_settings={"ignore_unknown_options": True})
def decode_command(
    model: Model,
    point: Annotated[list[float], typer.Argument(help="Latent coordinates, e.g. 0.5 1.5.")],
    label: Annotated[int | None, typer.Option(help="Digit to draw (conditional models).")] = None,
    out: Annotated[Path, typer.Option(help="PNG to write.")] = Path("decoded.png"),
    scale: Annotated[int, typer.Option(help="Enlarge the 28×28 digit this many times.")] = 10,
) -> None:
    """Decode one latent point into a digit (e.g. `numgen decode RUN 0.5 1.5`)."""
    vae = load(model)
    if len(point) != vae.config.latent_dim:
        raise typer.BadParameter(
            f"this model's latent has {vae.config.latent_dim} coordinates, got {len(point)}",
            param_hint="POINT",
        )
    if not all(math.isfinite(p) for p in point):
        raise typer.BadParameter("coordinates must be finite numbers", param_hint="POINT")
    image = generate.decode(vae, [point], label)[0]
    out_path(plots.save_image(image, out, scale))


@app.command("manifold")
def manifold_command(
    model: Model,
    n: Annotated[int, typer.Option(help="Grid points per side.", min=1, max=100)] = 30,
    range_: Annotated[
        tuple[float, float], typer.Option("--range", help="Low and high latent coordinate.")
    ] = (-1.5, 1.5),
    label: Annotated[int | None, typer.Option(help="Digit to draw (conditional models).")] = None,
    out: Annotated[Path, typer.Option(help="PNG to write.")] = Path("manifold.png"),
) -> None:
    """The n×n grid of digits decoded over [low, high]², axes showing the latent coordinates."""
    lo, hi = range_
    vae = load(model)
    out_path(plots.plot_manifold(generate.manifold(vae, n, lo, hi, label), lo, hi, out))


@app.command("sample")
def sample_command(
    model: Model,
    n: Annotated[int, typer.Option("-n", "--n", help="How many digits.", min=1, max=10_000)] = 64,
    seed: Seed = 0,
    label: Annotated[int | None, typer.Option(help="Digit to draw (conditional models).")] = None,
    out: Annotated[Path, typer.Option(help="PNG to write.")] = Path("samples.png"),
) -> None:
    """Digits decoded from the prior N(0, I), as a grid."""
    vae = load(model)
    out_path(plots.save_grid(generate.sample(vae, n, seed, label), out, scale=3))


@app.command("reconstruct")
def reconstruct_command(
    model: Model,
    n: Annotated[int, typer.Option("-n", "--n", help="How many test digits.", min=1, max=50)] = 12,
    dataset: Dataset = "mnist",
    data_dir: DataDir = None,
    out: Annotated[Path, typer.Option(help="PNG to write.")] = Path("reconstructions.png"),
) -> None:
    """Test digits above their reconstructions."""
    vae = load(model)
    test = load_digits(dataset, "test", data_dir).subset(n)
    out_path(plots.plot_reconstructions(test.images, generate.reconstruct(vae, test), out))


@plot_app.command("losses")
def plot_losses_command(
    run: Annotated[Path, typer.Argument(help="A run directory.")],
    out: Annotated[Path, typer.Option(help="PNG to write.")] = Path("losses.png"),
) -> None:
    """Train and test loss curves of a run (reconstruction and KL apart)."""
    records = read_metrics(run)
    if not records:
        raise TrainingError(f"{run}: no metrics.jsonl with finished epochs")
    out_path(plots.plot_losses(records, out))


# --- the main job --------------------------------------------------------------------------------


@app.command("demo")
def demo_command(
    out: Annotated[Path, typer.Option(help="Folder for the model, pictures and report.")] = Path(
        "demo_out"
    ),
    epochs: Annotated[int, typer.Option(help="Training epochs.", min=1)] = 10,
    seed: Seed = 0,
    device: Device = "auto",
) -> None:
    """The original project end to end on the embedded digits (offline): train the 2-D VAE,
    draw every picture, write report.md."""
    from numgen.demo import run_demo

    with progress_bar("demo") as progress:
        task = progress.add_task("epoch 1", total=None, status="")

        def on_batch(done: int, total: int, loss: float) -> None:
            progress.update(task, completed=done, total=total, status=f"loss {loss:.2f}")

        def on_epoch(r: dict) -> None:
            progress.update(task, description=f"epoch {r['epoch'] + 1}")
            losses = f"train loss {r['train_loss']:.2f}, test loss {r['test_loss']:.2f}"
            progress.console.print(f"epoch {r['epoch']}: {losses}")

        report = run_demo(
            out, epochs=epochs, seed=seed, device=device, on_batch=on_batch, on_epoch=on_epoch
        )
    console.print(
        f"report: [green]{report}[/green]  (pictures beside it, model in {report.parent / 'run'})"
    )


# --- entry point ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; bad arguments and bad input end with one line on stderr and exit code 2."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    command = typer.main.get_command(app)
    try:
        command.main(args=argv, prog_name="numgen", standalone_mode=False)
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("Interrupted.")
        return 130
    except typer.Exit as done:
        return done.exit_code
    except typer.TyperException as err:  # Click's usage errors: bad option, missing argument ...
        ctx = getattr(err, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx else ""
        err_console.print(
            f"Error: {err.format_message()}{hint}", highlight=False, soft_wrap=True, markup=False
        )
        return getattr(err, "exit_code", 2)
    except USER_ERRORS as err:
        err_console.print(f"Error: {err}", highlight=False, soft_wrap=True, markup=False)
        return 2
    return 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
