"""Writing with a conditional model: `numgen digits`, `write`, `morph` and `dataset`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from PIL import Image

from numgen import compose, export, plots
from numgen.cli.common import (
    DrawPrecision,
    Seed,
    app,
    console,
    out_path,
    progress_bar,
    writable,
)
from numgen.compose import DEFAULT_WRITER
from numgen.config import MAX_SEED, fits
from numgen.hub import load
from numgen.layout import TOUCHING
from numgen.models import Generator
from numgen.models.sampling import Sampling, check_precision
from numgen.pictures import open_image

ModelOption = Annotated[
    str,
    typer.Option(
        "--model",
        help="A bundled model name or a run/model directory of a conditional model (a onestep, a "
        "flow or a cvae).",
    ),
]
StyleSeed = Annotated[int, typer.Option(help="Seed of the handwriting style.", min=0, max=MAX_SEED)]
OdeSteps = Annotated[
    int | None, typer.Option(help="flow models: ODE steps of the sampler [default: the model's].")
]
Guidance = Annotated[
    float | None,
    typer.Option(
        help="flow models: classifier-free guidance weight (1 = none) [default: the model's]."
    ),
]


Touching = Annotated[
    float,
    typer.Option(
        help="Mean share of neighbouring digits that touch or overlap, 0 (always apart) to 0.5; "
        "each hand's own share is drawn around it (numgen.layout.Hand).",
        min=0.0, max=0.5,
    ),
]  # fmt: skip
Check = Annotated[
    bool,
    typer.Option(
        help="Redraw a style whose digits numgen's legibility checker misreads, where the model "
        "has a check (the bundled onestep and flow); --no-check shows the model's raw draws."
    ),
]


def load_for_drawing(
    model: str, ode_steps: int | None = None, guidance: float | None = None, check: bool = True,
    precision: str = "fp32",
) -> tuple[Generator, Sampling]:  # fmt: skip
    """The model, and how to draw with it: its own sampling with the sampler options a command
    was given (steps and guidance: flow models only; ``check=False`` turns the legibility check
    off; ``precision`` of the network passes)."""
    check_precision(precision)  # before the model is read
    generator = load(model)
    return generator, generator.sampling_with(
        steps=ode_steps, guidance=guidance, check=check, precision=precision
    )


@app.command("digits")
def digits_command(
    digit: Annotated[int, typer.Argument(help="The digit to draw, 0-9.", min=0, max=9)],
    n: Annotated[int, typer.Option("-n", "--n", help="How many.", min=1, max=1024)] = 16,
    model: ModelOption = DEFAULT_WRITER,
    seed: Seed = 0,
    out: Annotated[Path, typer.Option(help="PNG to write.")] = Path("digits.png"),
    ode_steps: OdeSteps = None,
    guidance: Guidance = None,
    check: Check = True,
    precision: DrawPrecision = "fp32",
) -> None:
    """A grid of one digit in varied handwriting styles."""
    writable(out)
    generator, sampling = load_for_drawing(model, ode_steps, guidance, check, precision)
    images = compose.digits(generator, digit, n, seed, sampling)
    out_path(plots.save_grid(images, out, scale=3))


@app.command("write")
def write_command(
    text: Annotated[
        str,
        typer.Argument(
            help="The number to write: digits, . , - + / : ( ) and spaces, e.g. 2026, "
            "02.12.2026, '-1 234,56' or '+7 (812) 555-01-23'."
        ),
    ],
    model: ModelOption = DEFAULT_WRITER,
    style_seed: StyleSeed = 0,
    style_from: Annotated[
        Path | None,
        typer.Option(
            help="Copy the style of the digit in this picture (--model flow copies it most "
            "closely: the default onestep pulls it towards its class's real styles)."
        ),
    ] = None,
    seed: Annotated[
        int, typer.Option(help="Seed of the jitter of sizes and spacing.", min=0, max=MAX_SEED)
    ] = 0,
    variants: Annotated[
        int, typer.Option(help="Write it this many times, one below the other.", min=1, max=100)
    ] = 1,
    height: Annotated[
        int,
        typer.Option(
            help="Height of the image in pixels (above 28: crisp outlines).", min=8, max=1024
        ),
    ] = 28,
    ink: Annotated[str, typer.Option(help="light (white on black, as MNIST) or dark.")] = "light",
    touching: Touching = TOUCHING,
    out: Annotated[
        Path | None,
        typer.Option(help="PNG to write [default: TEXT.png, with / : ( ) and spaces as _]."),
    ] = None,
    ode_steps: OdeSteps = None,
    guidance: Guidance = None,
    check: Check = True,
    precision: DrawPrecision = "fp32",
) -> None:
    """One image of the whole number in one consistent handwriting style, its dots, commas,
    dashes, slashes, colons and brackets drawn in the same hand.

    With --variants N, variant i uses style seed STYLE_SEED+i and jitter seed SEED+i (with
    --style-from, only the jitter varies)."""
    text = compose.check_text(text)
    out = writable(out or Path(f"{re.sub(r'[^0-9.,+-]', '_', text)}.png"))
    # each variant: about height x (1.3 height per digit) grey bytes, held a few times over
    fits("--variants", variants, lambda n: 4 * n * height * int(1.3 * height * len(text) + 8))
    generator, sampling = load_for_drawing(model, ode_steps, guidance, check, precision)
    writer = compose.Writer(generator, sampling=sampling)
    style = writer.style_from_image(open_image(style_from)) if style_from else None
    pictures = [
        writer.write(text, style, style_seed + i, seed + i, height, ink, touching)
        for i in range(variants)
    ]
    if variants == 1:
        out_path(plots.save_image(np.asarray(pictures[0]), out))
        return
    paper = 0 if ink == "light" else 255
    width = max(p.width for p in pictures)
    rows = np.full((variants, height, width), paper, dtype=np.uint8)
    for row, picture in zip(rows, pictures, strict=True):
        row[:, : picture.width] = np.asarray(picture)
    out_path(plots.save_image(plots.tile(rows, ncols=1, pad=4, value=paper), out))


@app.command("morph")
def morph_command(
    start: Annotated[int, typer.Argument(help="First digit, 0-9.", min=0, max=9)],
    end: Annotated[int, typer.Argument(help="Last digit, 0-9.", min=0, max=9)],
    steps: Annotated[int, typer.Option(help="Frames.", min=2, max=200)] = 10,
    model: ModelOption = DEFAULT_WRITER,
    style_seed: StyleSeed = 0,
    to_style_seed: Annotated[
        int | None,
        typer.Option(help="Also morph the style into this seed's style.", min=0, max=MAX_SEED),
    ] = None,
    out: Annotated[
        Path, typer.Option(help="A .gif (animation) or .png (a strip of frames).")
    ] = Path("morph.gif"),
    ode_steps: OdeSteps = None,
    guidance: Guidance = None,
) -> None:
    """Morph one digit into another in one style (or, with the same digit twice and
    --to-style-seed, one handwriting into another)."""
    writable(out, suffixes=(".gif", ".png"))
    generator, sampling = load_for_drawing(model, ode_steps, guidance)
    style = compose.style_latent(generator, style_seed)
    end_style = None if to_style_seed is None else compose.style_latent(generator, to_style_seed)
    frames = compose.morph(generator, start, end, steps, style, end_style, sampling)
    if out.suffix.lower() == ".png":
        out_path(plots.save_grid(frames, out, ncols=steps, scale=3))
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    size = (28 * 4, 28 * 4)
    gif = [
        Image.fromarray(plots.to_uint8(f)).resize(size, Image.Resampling.NEAREST) for f in frames
    ]
    gif[0].save(out, save_all=True, append_images=gif[1:], duration=120, loop=0)
    out_path(out)


@app.command("dataset")
def dataset_command(
    count: Annotated[
        int | None,
        typer.Option(help="How many images [default: 1000, or one per line of --texts].", min=1),
    ] = None,
    kind: Annotated[
        str,
        typer.Option(
            help=f"What to write: {' | '.join(export.KINDS)} (integer: digit strings of "
            "--length; the others in several common formats each, e.g. DD.MM.YYYY, 1 234,56, "
            "+7 (812) 555-01-23)."
        ),
    ] = "integer",
    texts: Annotated[
        Path | None,
        typer.Option(
            help="Write the texts in this file, one a line (row i: line i modulo the lines), "
            "instead of --kind."
        ),
    ] = None,
    length: Annotated[
        str | None,
        typer.Option(help="--kind integer: digits per number, 4 or a range such as 3-8 [4]."),
    ] = None,
    alphabet: Annotated[
        str, typer.Option(help="--kind integer: the digits to draw from.")
    ] = "0123456789",
    model: Annotated[
        str,
        typer.Option(
            "--model",
            help=f"A bundled model name or a run/model directory. Default: {DEFAULT_WRITER}, "
            "the writer of every command, chosen for realism: a flow distilled into one network "
            "evaluation, closer to real digits than the bundled flow and the best numbers to "
            "train a reader (bench/results/metric_spread_loose.md, ocr_transfer_loose_seeds.md); "
            "--model flow draws at ~1/2 its speed, --model cvae many times faster but softer, "
            "more uniform digits.",
        ),
    ] = DEFAULT_WRITER,
    seed: Seed = 0,
    height: Annotated[
        int,
        typer.Option(
            help="Height of each image in pixels (above 28: crisp outlines).", min=8, max=1024
        ),
    ] = 28,
    ink: Annotated[str, typer.Option(help="light (white on black, as MNIST) or dark.")] = "light",
    touching: Touching = TOUCHING,
    format: Annotated[
        str, typer.Option("--format", help=f"{' | '.join(export.FORMATS)} (see the README).")
    ] = "webdataset",
    split: Annotated[
        str, typer.Option(help="Splits and their shares, e.g. train=0.9,test=0.1.")
    ] = "train=1",
    shard_size: Annotated[int, typer.Option(help="Images per shard (one file per split).")] = 5000,
    png_level: Annotated[
        int, typer.Option(help="zlib level of each PNG, 0 (stored, fastest) to 9.")
    ] = 1,
    workers: Annotated[
        int,
        typer.Option(
            help=f"Processes writing in parallel (from {export.POOL_MIN_IMAGES:,} images on), "
            "or Ray actors with --engine ray.",
            min=1,
        ),
    ] = 2,
    engine: Annotated[str, typer.Option(help="local (processes) or ray (numgen[ray]).")] = "local",
    ray_address: Annotated[
        str | None, typer.Option(help="A Ray cluster to join ('auto': this machine's) [local Ray].")
    ] = None,
    num_shards: Annotated[
        int, typer.Option(help="Split the export over this many jobs (a Slurm array, ...).")
    ] = 1,
    shard_index: Annotated[int, typer.Option(help="This job's number, 0 to --num-shards - 1.")] = 0,
    out: Annotated[Path, typer.Option(help="Folder of the dataset.")] = Path("dataset"),
    overwrite: Annotated[bool, typer.Option(help="Replace an earlier export in --out.")] = False,
    resume: Annotated[
        bool, typer.Option(help="Continue an interrupted export (repeat its options).")
    ] = False,
    ode_steps: OdeSteps = None,
    guidance: Guidance = None,
    check: Check = True,
    precision: DrawPrecision = "fp32",
) -> None:
    """A labelled dataset of handwritten numbers for OCR and digit detection: WebDataset or
    Parquet shards, an ImageFolder, or PNGs + labels.csv, with a dataset card (README.md) and a
    box per character. Texts are digit strings, dates, times, amounts, decimals or phone numbers
    (--kind), or a file's lines (--texts). The same options give the same bytes, whatever
    --workers or --engine."""
    writable(out, folder=True)
    if (kind != "integer" or texts is not None) and length is not None:
        raise compose.ComposeError("--length applies to --kind integer alone: drop it")
    low, high = export.parse_length(length or "4")
    if texts is not None and count is None:
        count = len(export.ExportConfig(count=1, texts_file=str(texts)).texts())
    config = export.ExportConfig(
        count=count or 1000, kind=kind, texts_file=None if texts is None else str(texts),
        min_length=low, max_length=high, alphabet=alphabet, seed=seed, height=height,
        ink=ink, model=model, format=format, shard_size=shard_size,
        split=export.parse_split(split), png_level=png_level, ode_steps=ode_steps,
        guidance=guidance, check=check, touching=touching, precision=precision,
    )  # fmt: skip
    with progress_bar("dataset") as progress:
        task = progress.add_task("images", total=config.count, status="")
        summary = export.export_dataset(
            out, config, workers=workers, overwrite=overwrite, resume=resume,
            on_progress=lambda done, total: progress.update(task, completed=done, total=total),
            num_shards=num_shards, shard_index=shard_index, engine=engine,
            ray_address=ray_address,
        )  # fmt: skip
    console.print(
        f"{summary['images']:,} images ({summary['digits']:,} digits) in [green]{out}[/green]: "
        f"{summary['decoded']:,} made in {summary['seconds']:.1f} s "
        f"({summary['images_per_s']:,.0f} images/s)"
    )
    if not summary["complete"]:
        console.print(
            f"shards {shard_index} of every {num_shards} are done; the dataset card is written "
            "by the job that finishes the last shard"
        )
