"""How the characters of a number sit side by side: each cut to its inked columns, with a little
seeded jitter of size, height and gap, within a margin as MNIST's border.

Cells are float arrays ``(N, 28, 28)`` in [0, 1] (ink = 1); a canvas is ``(28, W)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from numgen import glyphs

# Layout of a number, in pixels of the 28×28 digit cells.
MARGIN = 4  # blank columns left and right of the number, as MNIST's 4-pixel border
GAPS = (2, 5)  # blank columns between neighbouring digits: drawn uniformly from this range
RISE = 1  # each digit moves up or down by up to this many pixels
SIZE_JITTER = 0.06  # each digit is scaled by a factor within 1 ± this


@dataclass(frozen=True)
class Layout:
    """The jitter of one number of ``n`` digits, drawn by :func:`draw_layout`."""

    scales: np.ndarray  # (n,) size factor of each digit, within 1 ± SIZE_JITTER
    rises: np.ndarray  # (n,) int: pixels each digit moves up (negative: down)
    gaps: np.ndarray  # (n - 1,) int: blank columns between neighbours


def draw_layout(rng: np.random.Generator, n: int) -> Layout:
    """Random sizes, heights and gaps for ``n`` digits, all from one draw of ``rng``."""
    scales, rises, gaps = jitter(rng.random((3, n)))
    return Layout(scales=scales, rises=rises, gaps=gaps[1:])


def jitter(u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each digit's size factor, rise and gap before it, from uniform numbers ``u`` ``(3, ...)``
    in [0, 1), digit by digit (so many numbers' digits can be done at once)."""
    return (
        (1 + SIZE_JITTER * (2 * u[0] - 1)).astype(np.float32),
        (u[1] * (2 * RISE + 1)).astype(int) - RISE,
        GAPS[0] + (u[2] * (GAPS[1] - GAPS[0] + 1)).astype(int),
    )


def resize_about_centre(images: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Each image ``(N, 28, 28)`` enlarged by its factor in ``scales`` ``(N,)`` about the image
    centre, bilinearly, on the same 28×28 canvas: ``(N, 28, 28)``.

    Bilinear resampling is separable, so each image is two small matrix products ``R X Rᵀ``,
    where row ``i`` of ``R`` holds the interpolation weights output pixel ``i`` reads from —
    several times faster than ``grid_sample`` for 28×28 images, with the same result.
    """
    n = len(scales)
    # Pixel i has its centre at i + 0.5; it reads the source at (i + 0.5 - 14) / scale + 14.
    source = (np.arange(28) + 0.5 - 14) / np.asarray(scales, np.float32)[:, None] + 13.5  # (N, 28)
    left = np.floor(source).astype(int)
    weight = (source - left).astype(np.float32)
    # Columns 0 and 29 stand for pixels beyond the edges (ink 0); they are dropped after filling.
    r = np.zeros((n, 28, 30), dtype=np.float32)
    image, pixel = np.arange(n)[:, None], np.arange(28)[None, :]
    r[image, pixel, np.clip(left, -1, 28) + 1] = 1 - weight
    r[image, pixel, np.clip(left + 1, -1, 28) + 1] = weight
    r = torch.from_numpy(r[:, :, 1:29].copy())
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    return (r @ x @ r.transpose(1, 2)).numpy()


def lay_out(
    cells: np.ndarray, layout: Layout, text: str | None = None
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Place the characters' cells ``(n, 28, 28)`` side by side: each is cut to its inked columns,
    raised by its rise, and separated from the previous by its gap, within a ``MARGIN`` on both
    ends; a space of ``text`` (digits alone when None) is ``glyphs.SPACE_WIDTH`` blank columns.

    Returns the canvas ``(28, W)`` in [0, 1] and the columns ``[x0, x1)`` on it of each character
    other than a space.
    """
    text = glyphs.DIGITS[0] * len(cells) if text is None else text
    first, widths = glyphs.inked_columns(cells, text)
    canvas = np.zeros((28, 2 * MARGIN + widths.sum() + layout.gaps.sum()), dtype=np.float32)
    boxes, x = [], MARGIN
    for i, cell in enumerate(cells):
        r = int(layout.rises[i])  # rows move up by r; the 4-pixel border keeps the ink whole
        if text[i] != glyphs.SPACE:
            src = cell[max(r, 0) : 28 + min(r, 0), first[i] : first[i] + widths[i]]
            canvas[max(-r, 0) : 28 + min(-r, 0), x : x + widths[i]] = src
            boxes.append((x, x + int(widths[i])))
        x += int(widths[i]) + (int(layout.gaps[i]) if i < len(layout.gaps) else 0)
    return canvas, boxes
