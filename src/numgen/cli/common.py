"""What every numgen command shares: the Typer apps, option types, console, progress bar, config
building, and the errors that mean "your input is wrong" (one line, exit 2)."""

from __future__ import annotations

import errno
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from numgen.config import MAX_SEED
from numgen.errors import NumgenError

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


def set_verbosity(
    ctx: typer.Context,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show numgen's log messages (level INFO).")
    ] = False,
) -> None:
    """`numgen -v COMMAND ...` shows what numgen logs as it works; without it, warnings only."""
    logging.getLogger("numgen").setLevel(logging.INFO if verbose else logging.NOTSET)
    show_help_without_command(ctx)


app = command_group(
    "Handwritten digits and numbers from generative models trained on MNIST: variational "
    "autoencoders, flow matching and a one-step flow."
)
app.callback(invoke_without_command=True)(set_verbosity)
data_app = command_group("Get and check MNIST.")
plot_app = command_group("Pictures of a trained model.")
app.add_typer(data_app, name="data")
app.add_typer(plot_app, name="plot")

# The operating system's errors that a user can fix, with what to do; any other OSError is
# reported as a bug (with its traceback).
OS_ERROR_HINTS = {
    errno.ENOENT: "check the path",
    errno.EEXIST: "choose another name or remove it",
    errno.EACCES: "check its permissions, or choose another place",
    errno.EPERM: "check its permissions, or choose another place",
    errno.EISDIR: "give a file, not a folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.ENOSPC: "free some space or write elsewhere",
    errno.EROFS: "choose a writable place",
    errno.EDQUOT: "free some space or write elsewhere",
    errno.ENAMETOOLONG: "choose a shorter name",
    errno.EFBIG: "the file would exceed the size this disk or process may write; write elsewhere",
}


def user_error_message(err: BaseException) -> str | None:
    """The one-line message for an error that means "your input is wrong" — a
    :class:`NumgenError`, or an OSError whose cause a user can fix — else None (a bug)."""
    if isinstance(err, NumgenError):
        return str(err)
    if isinstance(err, OSError) and err.errno in OS_ERROR_HINTS:
        where = f"{err.filename}: " if err.filename is not None else ""
        return f"{where}{err.strerror or err}; {OS_ERROR_HINTS[err.errno]}"
    return None


Config = TypeVar("Config")


def make_config(config_class: type[Config], **options: object) -> Config:
    """A config dataclass built by keyword from command-line options; a value it refuses (its
    ``__post_init__`` raises ValueError or TypeError) is a usage error, one line and exit 2."""
    try:
        return config_class(**options)
    except (TypeError, ValueError) as err:
        raise typer.BadParameter(str(err)) from None


NAME_MAX = 255  # bytes in one file name, on Linux, macOS and Windows file systems


class OutputError(NumgenError):
    """An output path that cannot be written."""


# Options shared by several commands.
DataDir = Annotated[
    Path | None, typer.Option(help="Folder with the four MNIST IDX files [env: NUMGEN_DATA_DIR].")
]
Dataset = Annotated[
    str, typer.Option(help="'mnist' (IDX files, downloaded if absent) or 'embedded' (offline).")
]
Seed = Annotated[
    int,
    typer.Option(help="Random seed: the same seed gives the same output.", min=0, max=MAX_SEED),
]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")]
DrawPrecision = Annotated[
    str,
    typer.Option(
        "--precision",
        help="fp32 (the same bytes on every machine) or bf16: faster network passes where the "
        "CPU/GPU multiplies bfloat16 natively, the digits a little different "
        "(bench/results/draw_precision.md).",
    ),
]
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


def writable(
    path: Path, option: str = "--out", folder: bool = False, suffixes: tuple[str, ...] = (".png",)
) -> Path:
    """``path`` if a file (or, with ``folder``, a folder) can be written there — checked before
    any work: a file's name must end in one of ``suffixes`` and not be too long, an existing one
    be a regular file, and a temporary file is created and removed in its nearest existing
    folder."""
    if len(os.fsencode(path.name)) > NAME_MAX:  # before any look at it: that would fail too
        raise OutputError(
            f"{option} {path.name[:40]}…: a name of {len(os.fsencode(path.name))} bytes; file "
            f"systems take at most {NAME_MAX}"
        )
    if path.exists() and path.is_dir() != folder:
        raise OutputError(f"{option} {path}: is a {'file' if folder else 'folder'}")
    if not folder and path.suffix.lower() not in suffixes:
        raise OutputError(f"{option} {path}: end the name in {' or '.join(suffixes)}")
    if not folder and path.exists() and not path.is_file():
        raise OutputError(f"{option} {path}: not a regular file (a device, pipe or socket)")
    existing = path if folder else path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"{option} {path}: {existing} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise OutputError(
            f"{option} {path}: cannot write in {existing} ({err.strerror or err})"
        ) from None
    return path
