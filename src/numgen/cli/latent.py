"""The original project's pictures of a latent space: `numgen decode`, `manifold` and
`plot latent`, for models with a latent (VAEs)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from numgen import generate, plots
from numgen.cli.common import DataDir, Dataset, Model, app, out_path, plot_app, writable
from numgen.config import fits
from numgen.data import load_digits
from numgen.hub import ModelError, load
from numgen.models import Generator


def load_latent_model(model: str) -> Generator:
    """A model with a latent space to decode and plot (a VAE), or a one-line error."""
    generator = load(model)
    if not generator.has_latent:
        raise ModelError(
            f"{model}: a {generator.config.kind} model has no latent space to decode or plot; "
            "give a VAE or CVAE (e.g. vae2d, cvae), or use `numgen sample` / `numgen digits`"
        )
    return generator


def check_label(generator: Generator, label: int | None, model: str) -> None:
    """Refuse a ``--label`` the model cannot draw: any label for a model not conditioned on the
    digit (it would be ignored), a label beyond a conditional model's classes."""
    if label is None:
        return
    if not generator.conditional:
        raise typer.BadParameter(
            f"{model} is a {generator.config.kind} model, not conditioned on the digit: it cannot "
            "draw a chosen digit; drop --label, or give a conditional model (e.g. cvae)",
            param_hint="--label",
        )
    classes = generator.config.num_classes
    if not 0 <= label < classes:
        raise typer.BadParameter(f"{label}: give a digit 0-{classes - 1}", param_hint="--label")


@plot_app.command("latent")
def plot_latent_command(
    model: Model,
    out: Annotated[Path, typer.Option(help="PNG to write.")] = Path("latent.png"),
    dataset: Dataset = "mnist",
    data_dir: DataDir = None,
    limit: Annotated[int | None, typer.Option(help="Plot only the first N test digits.")] = None,
) -> None:
    """Test-set encodings in the latent plane, coloured by digit (PCA beyond 2-D)."""
    writable(out)
    vae = load_latent_model(model)
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
    scale: Annotated[
        int, typer.Option(help="Enlarge the 28×28 digit this many times.", min=1)
    ] = 10,
) -> None:
    """Decode one latent point into a digit (e.g. `numgen decode RUN 0.5 1.5`)."""
    writable(out)
    fits("--scale", scale, lambda s: 3 * (28 * s) ** 2)  # the enlarged image, with copies
    vae = load_latent_model(model)
    check_label(vae, label, model)
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
    writable(out)
    vae = load_latent_model(model)
    check_label(vae, label, model)
    out_path(plots.plot_manifold(generate.manifold(vae, n, lo, hi, label), lo, hi, out))
