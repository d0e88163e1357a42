"""How the characters of a number sit side by side, as one writer sets them down: each cut to its
inked columns, at its hand's size, spacing and baseline (a :class:`Hand`, drawn from the style's
seed: where on the line it writes, too), with seeded jitter of size, height and gap about them;
neighbouring digits touch or overlap in a share of pairs; a margin as MNIST's border on both
ends.

Cells are float arrays ``(N, 28, 28)`` in [0, 1] (ink = 1); a canvas is ``(28, W)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from numgen import glyphs
from numgen.data import INK_LEVEL
from numgen.errors import ComposeError
from numgen.generate import uniforms

# Layout of a number, in pixels of the 28×28 digit cells. A writer's habits (the :class:`Hand`)
# set its size, spacing, baseline drift and how often its digits touch; each character then
# jitters about them.
MARGIN = 4  # blank columns left and right of the number, as MNIST's 4-pixel border
SIZES = (0.80, 1.10)  # a hand's size: every character of its number scaled by a factor in here
SPACINGS = (1.5, 5.0)  # a hand's usual blank columns between neighbours
DRIFT = 0.35  # a hand's baseline climbs or falls by up to this many rows per character
TOUCHING = 0.5  # the default share of neighbouring digits that touch or overlap (see Hand)
MAX_OVERLAP = 3  # touching neighbours' ink columns overlap by 0 to this many columns
SIZE_JITTER = 0.08  # each character is scaled by a further factor within 1 ± this
SPACING_JITTER = 1.5  # each gap lies within the hand's spacing ± this (at least 1 column)
LIFT = 3  # a hand writes its numbers up to this many rows above or below the middle of the line
RISE = 1  # each character moves up or down by up to this many rows about the baseline
HAND_SLOTS = 5  # uniform numbers per hand: size, spacing, drift, touching, lift
HAND_KEY = 37  # keys the hash of a hand apart from other uses of the same seeds


@dataclass(frozen=True)
class Hand:
    """How one writer lays out a number, shared by all its characters (arrays: one value per
    number, so many numbers' hands are drawn at once by :func:`hands`).

    ``touching`` is the share of neighbouring digit pairs whose ink columns meet or overlap.
    People's habits differ: some write every digit apart, others run them together (touching
    pairs are the classic hard case of reading digit strings: cheque amounts, forms, postcodes).
    Each hand's share is drawn uniformly between 0 and twice the export's ``touching`` setting,
    so that setting is the mean share over hands. Its default, 0.5 (hands then range from always
    apart to always touching), was chosen by ``bench/ocr_transfer.py``: against 0.2 it taught the
    bench's reader to read touching real numbers 3-4 points better and spaced ones as well (within
    half a point). 0 keeps every pair apart as numgen did before issue 20.
    """

    size: np.ndarray  # (N,) size factor of the number
    spacing: np.ndarray  # (N,) usual blank columns between neighbours
    drift: np.ndarray  # (N,) rows the baseline climbs per character (negative: falls)
    touching: np.ndarray  # (N,) share of neighbouring digit pairs that touch or overlap
    lift: np.ndarray  # (N,) rows the number sits above the middle of the line (negative: below)


def check_touching(touching: float) -> float:
    """``touching`` if it is a share from 0 to 0.5 (hands then touch in up to all pairs)."""
    if not 0 <= touching <= 0.5:
        raise ComposeError(f"touching={touching}: choose a share of digit pairs from 0 to 0.5")
    return float(touching)


def hands(seeds: np.ndarray, touching: float = TOUCHING) -> Hand:
    """The hands of the numbers whose styles were drawn with ``seeds`` ``(N,)`` (a hash of each
    seed, so a style seed always brings the same habits), around the mean ``touching`` share."""
    u = uniforms(HAND_KEY, np.asarray(seeds, np.int64), HAND_SLOTS).T  # (5, N)
    return Hand(
        size=(SIZES[0] + (SIZES[1] - SIZES[0]) * u[0]).astype(np.float32),
        spacing=SPACINGS[0] + (SPACINGS[1] - SPACINGS[0]) * u[1],
        drift=DRIFT * (2 * u[2] - 1),
        touching=2 * check_touching(touching) * u[3],
        lift=LIFT * (2 * u[4] - 1),
    )


@dataclass(frozen=True)
class Layout:
    """The jitter of one number of ``n`` characters, drawn by :func:`draw_layout`."""

    scales: np.ndarray  # (n,) size factor of each character
    rises: np.ndarray  # (n,) int: rows each character moves up (negative: down), before seat()
    gaps: np.ndarray  # (n - 1,) int: blank columns between neighbours (negative: overlap)


def draw_layout(rng: np.random.Generator, text: str, hand: Hand) -> Layout:
    """Sizes, heights and gaps for the characters of ``text`` in ``hand`` (one number's), from
    one draw of ``rng``."""
    n = len(text)
    scales, rises, gaps = jitter(
        rng.random((3, n)), hand, np.zeros(n, int), positions([n]), touchable(text)
    )
    return Layout(scales=scales, rises=rises, gaps=gaps[1:])


def positions(lengths: list[int] | np.ndarray) -> np.ndarray:
    """Each character's place from the middle of its number, for numbers of ``lengths``, in a
    row: ``[-1.5, -0.5, 0.5, 1.5]`` for one of 4 characters."""
    return np.concatenate([np.arange(n) - (n - 1) / 2 for n in lengths])


def touchable(chars: str) -> np.ndarray:
    """Whether each character and the one before it are both digits (only digits run into each
    other), ``(len(chars),)`` bool; for many numbers' characters in a row, a number's first
    digit must be masked by the caller or follow a non-digit."""
    digit = np.array([c in glyphs.DIGITS for c in chars], bool)
    return digit & np.concatenate([[False], digit[:-1]])


def jitter(
    u: np.ndarray, hand: Hand, number: np.ndarray, position: np.ndarray, may_touch: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each character's size factor, rise and gap before it, from uniform numbers ``u``
    ``(3, ...)`` in [0, 1), character by character (so many numbers' characters can be done at
    once): ``number`` says whose hand each character follows, ``position`` where it stands in
    its number (:func:`positions`), ``may_touch`` whether it may touch the one before it.

    A character touches its neighbour with its hand's ``touching`` chance, read from the same
    uniform number as its gap: then the gap is 0 to ``-MAX_OVERLAP`` columns, else the hand's
    spacing ± ``SPACING_JITTER``, at least 1."""
    size, spacing = hand.size[number], hand.spacing[number]
    drift, share = hand.drift[number], hand.touching[number]
    baseline = hand.lift[number] + drift * position + RISE * (2 * u[1] - 1)
    touch = may_touch & (u[2] < share)
    overlap = np.floor(u[2] / np.maximum(share, 1e-9) * (MAX_OVERLAP + 1)).astype(int)
    apart = (u[2] - share) / np.maximum(1 - share, 1e-9)  # uniform again, given no touch
    spaced = np.maximum(1, np.rint(spacing + SPACING_JITTER * (2 * apart - 1))).astype(int)
    return (
        (size * (1 + SIZE_JITTER * (2 * u[0] - 1))).astype(np.float32),
        np.rint(baseline).astype(int),
        np.where(touch, -np.minimum(overlap, MAX_OVERLAP), spaced),
    )


def starts(widths: np.ndarray, gaps: np.ndarray) -> tuple[np.ndarray, int]:
    """The left column of each of a number's characters on its canvas, ``(n,)``, and the
    canvas's width, for characters ``widths`` columns wide with ``gaps`` ``(n - 1,)`` between
    them, within a ``MARGIN`` on both ends. A thin 1 may overlap its neighbour by all of
    ``MAX_OVERLAP``, as writers run a 1 into the next digit: the stronger ink wins where strokes
    cross, so neither is erased. Capping overlaps at a third of the narrower digit's width cost
    bench/ocr_transfer.py's reader, trained on real digits in this layout, 1.4-1.9 pt on touching
    real numbers in an exploratory run (20,000 numbers, 5 epochs) and 0.7 pt in the committed
    run (bench/results/ocr_transfer.md). Each character still starts right of the one before it."""
    widths = np.asarray(widths, int)
    gaps = np.maximum(np.asarray(gaps, int), 1 - widths[:-1])
    left = MARGIN + np.concatenate([[0], np.cumsum(widths[:-1] + gaps)]).astype(int)
    return left, int((left + widths).max()) + MARGIN


def ink_rows(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first and last rows of each cell ``(N, 28, 28)`` that hold ink (above ``INK_LEVEL``),
    ``(N,)`` each; 0 and 27 for a blank cell."""
    inked = (np.asarray(cells) > INK_LEVEL).any(axis=2)  # (N, 28)
    blank = ~inked.any(axis=1)
    top, bottom = inked.argmax(axis=1), 27 - inked[:, ::-1].argmax(axis=1)
    return np.where(blank, 0, top), np.where(blank, 27, bottom)


def on_the_line(
    rises: np.ndarray, bottom: np.ndarray, digit: np.ndarray, lengths: list[int]
) -> np.ndarray:
    """Rises ``(C,)`` that also set each number's digits on one line, as people write them: a
    digit moves up by as many rows as its ink's bottom (``bottom``, ``(C,)``) lies below the
    median bottom of its number's digits. MNIST centres each digit by its mass, so beside a 0 a 7
    hangs low; on the line, a reader trained on numgen's numbers reads real ones better
    (bench/results/ocr_transfer.md). ``digit`` ``(C,)`` marks the digits; the other characters
    are drawn on the digits' line already (:mod:`numgen.glyphs`) and keep their rises.
    ``lengths``: the characters of each number, in a row."""
    out = np.array(rises, dtype=int)
    start = 0
    for n in lengths:
        mine, bottoms = digit[start : start + n], bottom[start : start + n]
        if mine.any():
            line = int(np.rint(np.median(bottoms[mine])))
            out[start : start + n] += np.where(mine, bottoms - line, 0)
        start += n
    return out


def seat(rises: np.ndarray, top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """Each character's rise, held where its ink (rows ``top`` to ``bottom`` of its cell) stays
    whole on the 28-row line: a hand writing near the top or bottom of the line keeps its
    characters on it, squeezed against that edge rather than cut."""
    return np.clip(rises, np.asarray(bottom) - 27, top)


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
    raised by its rise (digits set on one line, :func:`on_the_line`, and held whole on the
    canvas, :func:`seat`), and set its gap after the previous (:func:`starts`; where neighbours
    overlap, the stronger ink wins), within a ``MARGIN`` on both ends; a space of ``text`` (digits
    alone when None) is ``glyphs.SPACE_WIDTH`` blank columns.

    Returns the canvas ``(28, W)`` in [0, 1] and the columns ``[x0, x1)`` on it of each character
    other than a space.
    """
    text = glyphs.DIGITS[0] * len(cells) if text is None else text
    first, widths = glyphs.inked_columns(cells, text)
    left, width = starts(widths, layout.gaps)
    top, bottom = ink_rows(cells)
    digit = np.array([c in glyphs.DIGITS for c in text], bool)
    rises = seat(on_the_line(layout.rises, bottom, digit, [len(text)]), top, bottom)
    canvas = np.zeros((28, width), dtype=np.float32)
    boxes = []
    for i, cell in enumerate(cells):
        r, x, w = int(rises[i]), int(left[i]), int(widths[i])  # rows move up by r
        if text[i] != glyphs.SPACE:
            src = cell[max(r, 0) : 28 + min(r, 0), first[i] : first[i] + w]
            region = canvas[max(-r, 0) : 28 + min(-r, 0), x : x + w]
            np.maximum(region, src, out=region)
            boxes.append((x, x + w))
    return canvas, boxes
