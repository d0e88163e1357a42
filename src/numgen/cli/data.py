"""`numgen data download` and `numgen data check`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from numgen import plots
from numgen.cli.common import (
    DataDir,
    Dataset,
    choice,
    console,
    data_app,
    out_path,
    progress_bar,
    writable,
)
from numgen.data import check, check_files, load_digits, resolve_data_dir, verify_checksums
from numgen.download import download_mnist


@data_app.command("download")
def data_download(
    cache_dir: Annotated[Path | None, typer.Option(help="Where to keep the files.")] = None,
) -> None:
    """Download the four MNIST files from public mirrors, checking their MD5 sums."""
    if cache_dir is not None:
        writable(cache_dir, "--cache-dir", folder=True)
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
    writable(out)
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
