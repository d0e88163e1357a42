"""What every numgen command shares: the Typer apps, option types, console, progress bar, and the
errors that mean "your input is wrong" (one line, exit 2)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from numgen.data import DataError
from numgen.hub import ModelError
from numgen.train import TrainingError

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
