"""Every picture numgen draws, and nothing else. Functions take arrays and a path; they write a PNG.

Images are ``(N, 28, 28)`` arrays in [0, 1] (ink = 1) or uint8 in [0, 255]. Figures are made
with Matplotlib's object API (``Figure``, not ``pyplot``): they render to PNG without a display
and never switch the process's plotting backend, so a notebook that imports numgen keeps its
inline plots. Matplotlib is imported by the figures that need it, not with this module: grids of
digits are Pillow alone, and `numgen write` should not pay half a second for a library it
does not use.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from numgen.data import check_finite_pixels, to_uint8

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DIGIT_COLOURMAP = "tab10"  # one colour per digit; the web page's scatter uses the same

__all__ = ["to_uint8"]  # re-exported: pictures and the web app turn [0, 1] floats into bytes


def tile(images: np.ndarray, ncols: int, pad: int = 2, value: int = 0) -> np.ndarray:
    """Lay ``(N, h, w)`` images out in a grid ``ncols`` wide with ``pad`` pixels between: uint8."""
    images = to_uint8(images)
    n, h, w = images.shape
    nrows = -(-n // ncols)
    out = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad), value, dtype=np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, ncols)
        out[
            pad + r * (h + pad) : pad + r * (h + pad) + h,
            pad + c * (w + pad) : pad + c * (w + pad) + w,
        ] = image
    return out


def save_image(array: np.ndarray, path: str | Path, scale: int = 1) -> Path:
    """Save a 2-D array (uint8, or floats in [0, 1]) as a grey PNG, enlarged ``scale`` times with
    sharp pixels."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(to_uint8(array), mode="L")
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    image.save(path)
    return path


def save_grid(
    images: np.ndarray, path: str | Path, ncols: int | None = None, scale: int = 2
) -> Path:
    """A plain grid of digits (white ink on black, as MNIST) as a PNG."""
    ncols = ncols or int(np.ceil(np.sqrt(len(images))))
    return save_image(tile(images, ncols), path, scale)


def _figure(figsize: tuple[float, float], nrows: int = 1, ncols: int = 1, **kwargs):
    """A figure outside pyplot (nothing global to close) and its axes, as ``plt.subplots``."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def _finish(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    return path


def plot_latent(
    points: np.ndarray, labels: np.ndarray, path: str | Path,
    axis_names: tuple[str, str] = ("z[0]", "z[1]"), title: str = "Test digits in latent space",
) -> Path:  # fmt: skip
    """Scatter of 2-D latent points ``(N, 2)`` coloured by digit, with a legend."""
    import matplotlib

    colours = matplotlib.colormaps[DIGIT_COLOURMAP]
    fig, ax = _figure((8, 7))
    for digit in range(10):
        chosen = labels == digit
        ax.scatter(*points[chosen].T, s=3, alpha=0.6, color=colours(digit), label=str(digit))
    ax.set_xlabel(axis_names[0])
    ax.set_ylabel(axis_names[1])
    ax.set_title(title)
    ax.legend(title="digit", markerscale=4, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _finish(fig, path)


def label_latent_axes(ax: Axes, n: int, lo: float, hi: float) -> None:
    """Tick an n×n grid picture of 28-pixel digits with the latent coordinates it was decoded at
    (about 10 ticks a side; row 0 at the top = ``hi``)."""
    ticks = np.arange(n) * 28 + 13.5
    coords = np.linspace(lo, hi, n)
    step = max(1, n // 10)
    ax.set_xticks(ticks[::step], [f"{c:.2f}" for c in coords[::step]], rotation=90)
    ax.set_yticks(ticks[::step], [f"{c:.2f}" for c in coords[::-1][::step]])
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]")


def plot_manifold(
    grid: np.ndarray, lo: float, hi: float, path: str | Path, title: str | None = None
) -> Path:
    """The ``(n, n, 28, 28)`` grid of decoded digits as one picture whose axes show the latent
    coordinates (row 0 at the top = largest z[1])."""
    n = grid.shape[0]
    canvas = check_finite_pixels(grid.transpose(0, 2, 1, 3).reshape(n * 28, n * 28))
    fig, ax = _figure((10, 10))
    ax.imshow(canvas, cmap="Greys_r", vmin=0, vmax=1)
    label_latent_axes(ax, n, lo, hi)
    ax.set_title(title or f"Decoded digits over [{lo}, {hi}]²")
    return _finish(fig, path)


def plot_digit(image: np.ndarray, path: str | Path, title: str) -> Path:
    """One decoded digit, large, with a title (e.g. its latent coordinates)."""
    fig, ax = _figure((4, 4.3))
    ax.imshow(check_finite_pixels(image), cmap="Greys_r", vmin=0, vmax=1)
    ax.set_title(title)
    ax.axis("off")
    return _finish(fig, path)


def plot_reconstructions(
    originals: np.ndarray, reconstructions: np.ndarray, path: str | Path
) -> Path:
    """Originals (top row of each pair) above their reconstructions."""
    n = len(originals)
    check_finite_pixels(reconstructions)
    fig, axes = _figure((n * 0.9, 2.2), 2, n, squeeze=False)
    for i in range(n):
        for row, images in enumerate((originals, reconstructions)):
            axes[row, i].imshow(
                images[i], cmap="Greys_r", vmin=0, vmax=1 if images.dtype != np.uint8 else 255
            )
            axes[row, i].axis("off")
    axes[0, 0].set_title("original", loc="left", fontsize=9)
    axes[1, 0].set_title("reconstruction", loc="left", fontsize=9)
    return _finish(fig, path)


LOSS_NAMES = {"loss": "loss", "recon": "reconstruction", "kl": "KL", "flow": "flow matching"}


def plot_losses(records: list[dict], path: str | Path) -> Path:
    """Train and test loss per epoch, and each part of it apart (a VAE's reconstruction and KL)."""
    epochs = [r["epoch"] for r in records]
    parts = ["loss"] + [k[6:] for k in records[0] if k.startswith("train_") and k != "train_loss"]
    parts = parts if len(parts) > 2 else ["loss"]  # a loss of one part is drawn once
    fig, axes = _figure((4.3 * len(parts) + 0.1, 3.6), 1, len(parts), squeeze=False)
    for ax, part in zip(axes[0], parts, strict=True):
        name = LOSS_NAMES.get(part, part)
        ax.plot(epochs, [r[f"train_{part}"] for r in records], marker="o", label="train")
        ax.plot(epochs, [r[f"test_{part}"] for r in records], marker="o", label="test")
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{name} per image")
        ax.set_title(name)
        ax.legend()
    return _finish(fig, path)


# --- evaluation pictures -------------------------------------------------------------------------


def plot_grid_agreement(
    grid: np.ndarray, intended: np.ndarray, recognised: np.ndarray, lo: float, hi: float,
    path: str | Path,
) -> Path:  # fmt: skip
    """The decoded ``(n, n, 28, 28)`` grid over [lo, hi]² with each digit the recognizer reads
    differently from its intended label boxed in red: the recognizer's label top left (red), the
    intended one bottom right (blue). ``intended``, ``recognised``: labels ``(n*n,)`` in reading
    order (row 0 at the top = largest z[1])."""
    from matplotlib.patches import Rectangle

    n = grid.shape[0]
    canvas = check_finite_pixels(grid.transpose(0, 2, 1, 3).reshape(n * 28, n * 28))
    fig, ax = _figure((10, 10))
    ax.imshow(canvas, cmap="Greys_r", vmin=0, vmax=1)
    for i in np.flatnonzero(intended != recognised):
        top, left = divmod(int(i), n)
        x, y = left * 28 - 0.5, top * 28 - 0.5
        ax.add_patch(Rectangle((x, y), 28, 28, fill=False, edgecolor="red", linewidth=1.2))
        ax.text(x + 2, y + 2, str(recognised[i]), color="red", fontsize=6, va="top")
        ax.text(x + 26, y + 26, str(intended[i]), color="deepskyblue", fontsize=6, ha="right")
    label_latent_axes(ax, n, lo, hi)
    agree = np.mean(intended == recognised)
    ax.set_title(
        f"Recognizer agrees with the intended digit at {agree:.1%} of {n * n} points\n"
        "red box: disagreement (red = recognised, blue = majority of nearest test encodings)"
    )
    return _finish(fig, path)


def plot_confusion(
    counts: np.ndarray, path: str | Path,
    xlabel: str = "recognised as", ylabel: str = "requested digit",
) -> Path:  # fmt: skip
    """A confusion matrix ``(C, C)`` of counts (row = requested, column = recognised): colour is
    the share of the row, every non-zero count is written in its cell."""
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig, ax = _figure((7, 6))
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (row, col), count in np.ndenumerate(counts):
        if count:
            colour = "white" if shares[row, col] > 0.5 else "black"
            ax.text(col, row, str(count), ha="center", va="center", fontsize=8, color=colour)
    classes = np.arange(len(counts))
    ax.set_xticks(classes)
    ax.set_yticks(classes)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{np.trace(counts) / counts.sum():.2%} on the diagonal")
    fig.colorbar(image, ax=ax, label="share of the row")
    return _finish(fig, path)


def plot_class_bars(
    series: dict[str, np.ndarray], path: str | Path, ylabel: str, title: str
) -> Path:
    """Grouped bars, one group per digit 0-9 and one bar per named series of 10 values."""
    fig, ax = _figure((9, 3.6))
    width = 0.8 / len(series)
    for i, (name, values) in enumerate(series.items()):
        ax.bar(np.arange(10) + (i - (len(series) - 1) / 2) * width, values, width, label=name)
    ax.set_xticks(np.arange(10))
    ax.set_xlabel("digit")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if len(series) > 1:
        ax.legend()
    return _finish(fig, path)
