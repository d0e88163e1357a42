"""The characters of a number other than its digits — ``. , - + / : ( )`` and space — drawn as a
writer draws them, in the hand of the number they stand in.

MNIST has no such glyphs, so numgen draws them as pen strokes: each is one or a few polylines (a
dot is a very short stroke, a parenthesis a bent one), inked where a pixel centre lies within half
a stroke width of them, with a one-pixel anti-aliased edge. The hand is measured from the digits
drawn for the same number (:func:`measure_hand`): their stroke width, their slant, where their
tops and baselines lie. Each glyph is placed as people place it: a full stop on the baseline, a
comma dipping below it, a dash or minus at mid-height, a colon's two dots, a slash spanning the
digit height, parentheses taller than the digits. A space is blank columns wider than any gap
between digits. Each glyph's jitter (position, length, angle, width, bend) is a hash of its
character's seed, as a digit's own randomness comes from its seed.

Cells are ``(28, 28)`` float32 in [0, 1] (ink = 1) with rows down and columns right, like the
digits they are laid out with; a point ``(row, col)`` is a pixel centre.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from numgen.data import INK_LEVEL
from numgen.generate import uniforms

DIGITS = "0123456789"
SEPARATORS = ".,-+/:()"
SPACE = " "
CHARACTERS = DIGITS + SEPARATORS + SPACE  # every character numgen writes
CHARSET = "digits 0-9, . , - + / : ( ) and space"  # the same, for messages
SPACE_WIDTH = 8  # blank columns of a space, besides the gaps on both sides (digits: 2-5 apart)
JITTER_SLOTS = 6  # uniform numbers per glyph: position, length, angle, width, bend, spare
GLYPH_KEY = 21  # keys the hash of a glyph's jitter apart from other uses of the same seeds
# A digit's pen width (:func:`pen_widths`) from its capsule width (:func:`stroke_widths`, 50
# times cheaper): varying thickness narrows the typical stroke below its mean, and thin strokes
# the more, as scaling a digit down blurs its edges below half ink (pen ÷ capsule: median 0.74
# for capsules under 2.6 pixels, 0.84-0.87 over 3.4). A least-squares line through 2,000 of the
# bundled flow's digits, scaled as the layout scales them (hand sizes 0.80-1.10, ±8 % a
# character): pen ≈ 0.96 × capsule - 0.485 pixels. (One ratio, 0.83, drew the separators of
# small hands 5 % too wide.)
PEN_PER_CAPSULE, PEN_OFFSET = 0.96, -0.485
HALF_INK = 0.5  # the level at which a stroke's width is measured and its edge drawn
_ROWS, _COLS = np.mgrid[0:28, 0:28].astype(np.float32)
PIXELS = np.stack([_ROWS.ravel(), _COLS.ravel()], axis=1)  # (784, 2) pixel centres (row, col)


@dataclass(frozen=True)
class Hand:
    """What a number's digits tell of the hand that wrote them, in pixels of 28×28 cells."""

    width: float  # stroke width (see :func:`stroke_widths`)
    slant: float  # columns the strokes move right per row up (0: upright)
    top: float  # row of the digits' top edge (half ink)
    base: float  # row of their bottom edge: the baseline

    @property
    def height(self) -> float:
        return max(self.base - self.top, 8.0)


DEFAULT_HAND = Hand(width=2.8, slant=0.1, top=4.5, base=23.5)  # a number without digits


def stroke_widths(images: np.ndarray, upsample: int = 1) -> np.ndarray:
    """The stroke width of each image ``(N, H, W)`` of ink in [0, 1]: ``(N,)`` pixels.

    The width of the *capsule* (a stroke of constant width with round ends) that has the image's
    area ``A`` (its total ink) and perimeter ``P`` (its total variation, the sum of gradient
    magnitudes: by the coarea formula, the mean perimeter over ink levels): ``w = (P - √(P² -
    4πA)) / π``. For a long stroke this is ``2A / P``; for a dot, its diameter; so digits, dots and
    dashes are measured alike. Central differences miss part of a sharp edge's rise, more so
    along the axes; ``upsample`` 4 (bilinear, first) measures strokes of 2-4 pixels of any shape
    and direction within ~8 % (tests/test_glyphs.py), at ~50 times the cost: what benchmarks
    use. Strokes as long as a digit's are measured within ~3 % without.
    """
    images = np.asarray(images, np.float32)
    area = images.sum(axis=(1, 2))
    if upsample > 1:
        padded = torch.from_numpy(np.pad(images, ((0, 0), (2, 2), (2, 2))))[:, None]
        images = F.interpolate(padded, scale_factor=upsample, mode="bilinear")[:, 0].numpy()
    gy = images[:, 2:, 1:-1] - images[:, :-2, 1:-1]  # central differences; the outermost
    gx = images[:, 1:-1, 2:] - images[:, 1:-1, :-2]  # rows and columns hold no ink in a digit
    perimeter = np.sqrt(gy * gy + gx * gx).sum(axis=(1, 2)) / (2 * upsample)
    root = np.sqrt(np.maximum(perimeter**2 - 4 * np.pi * area, 0.0))
    return np.where(perimeter > 0, (perimeter - root) / np.pi, 0.0)


def pen_of_capsules(capsules: np.ndarray) -> np.ndarray:
    """The pen widths of digits with these capsule widths (:func:`stroke_widths`), as
    :func:`pen_widths` would measure them: ``(N,)`` pixels."""
    return np.maximum(PEN_PER_CAPSULE * np.asarray(capsules) + PEN_OFFSET, 0.0)


def pen_widths(images: np.ndarray, upsample: int = 8) -> np.ndarray:
    """The pen width of each image ``(N, H, W)``: the median diameter of the largest circles
    inscribed in its half-ink shape (upsampled bilinearly) along its ridge: ``(N,)`` pixels.

    A stroke's width wherever it is measured, crossings and round ends no exception, within a
    quarter pixel for drawn strokes of 2-4 pixels (tests/test_glyphs.py). Upsampled 8 times, as
    by default, the median falls in steps of about an eighth of a pixel (at 4, a quarter: 12 %
    of a small hand's 2-pixel pen) at about 5 times the cost: the benchmarks' measure, and
    :func:`stroke_widths` is drawing's.
    """
    from scipy import ndimage  # only where widths are judged: import numgen loads no scipy

    padded = torch.from_numpy(np.pad(np.asarray(images, np.float32), ((0, 0), (2, 2), (2, 2))))
    shapes = (
        F.interpolate(padded[:, None], scale_factor=upsample, mode="bilinear")[:, 0] >= HALF_INK
    )
    widths = []
    for shape in shapes.numpy():
        inside = ndimage.distance_transform_edt(shape)
        ridge = shape & (inside >= ndimage.maximum_filter(inside, size=3))
        widths.append(2 * np.median(inside[ridge]) / upsample if ridge.any() else 0.0)
    return np.array(widths)


def slants(images: np.ndarray) -> np.ndarray:
    """The slant of each image ``(N, H, W)``: the ink-weighted regression of column on row,
    as columns right per row up ``(N,)`` (0 for an upright or empty image)."""
    images = np.asarray(images, np.float32)
    rows = np.arange(images.shape[1], dtype=np.float32)
    row_ink = images.sum(axis=2)  # (N, H)
    row_x = images @ np.arange(images.shape[2], dtype=np.float32)  # (N, H): ink times column
    mass = np.maximum(row_ink.sum(axis=1), 1e-9)
    dy = rows[None] - ((row_ink @ rows) / mass)[:, None]  # (N, H)
    mx = row_x.sum(axis=1) / mass
    var = (row_ink * dy**2).sum(axis=1)
    cov = (dy * (row_x - mx[:, None] * row_ink)).sum(axis=1)
    return np.where(var > 0, -cov / np.maximum(var, 1e-9), 0.0)


def extents(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first and last rows ``(N,)`` each where an image ``(N, H, W)`` holds half ink or
    more (its top edge and baseline); 0 and H - 1 for an image without."""
    inked = np.asarray(images).max(axis=2) >= HALF_INK  # (N, H)
    empty = ~inked.any(axis=1)
    top = inked.argmax(axis=1)
    base = inked.shape[1] - 1 - inked[:, ::-1].argmax(axis=1)
    return np.where(empty, 0, top), np.where(empty, inked.shape[1] - 1, base)


def measure_hands(digits: np.ndarray, counts: list[int]) -> list[Hand]:
    """The hand of each number from its digits: ``digits`` ``(D, 28, 28)`` holds ``counts[i]``
    digits of number ``i`` in turn. Medians over all of a number's digits (its first four
    alone drew 4-6 % of separators outside 0.8-1.25 of the digits' pen width where all give
    3-4 %: bench/results/text_marks.md); :data:`DEFAULT_HAND` for a number without any.
    """
    counts = np.asarray(counts)
    tops, bases = extents(digits)
    measures = np.stack([pen_of_capsules(stroke_widths(digits)), slants(digits), tops, bases])
    # (4, numbers, most digits): each number's digits' measures in a row, NaN beyond its count
    slot = np.arange(max(int(counts.max(initial=0)), 1))[None, :]
    starts = np.cumsum(counts) - counts
    has = slot < counts[:, None]
    table = np.where(has, measures[:, np.where(has, starts[:, None] + slot, 0)], np.nan)
    table[:, counts == 0, 0] = 0.0  # a number without digits: measured as 0, given the default
    width, slant, top, base = np.nanmedian(table, axis=2).tolist()
    return [
        Hand(width=w, slant=min(max(s, -0.4), 0.6), top=t, base=b) if n else DEFAULT_HAND
        for w, s, t, b, n in zip(width, slant, top, base, counts.tolist(), strict=True)
    ]


# --- the strokes of each character ---------------------------------------------------------------


def _dot(hand: Hand, row: float, col: float, j: np.ndarray) -> list[np.ndarray]:
    """A dot: a stroke about a third of the pen's width long, at a slightly random angle."""
    half = 0.18 * hand.width * (1 + 0.5 * j[1])
    angle = 0.9 + 0.5 * j[2]  # rising to the right, as a pen touching down and lifting
    d = half * np.array([-np.sin(angle), np.cos(angle)])
    return [np.array([[row, col] - d, [row, col] + d])]


def _vertical(hand: Hand, mid: float, col: float, half: float) -> np.ndarray:
    """A stroke ``2 * half`` rows tall centred on ``(mid, col)``, leaning with the hand."""
    lean = hand.slant * half
    return np.array([[mid + half, col - lean], [mid - half, col + lean]])


def strokes(char: str, hand: Hand, j: np.ndarray, scale: float = 1.0) -> list[np.ndarray]:
    """The polylines (each ``(k, 2)`` points ``(row, col)``) a writer with ``hand`` draws for
    ``char``, in a 28×28 cell; ``j`` ``(JITTER_SLOTS,)`` in [-1, 1) jitters them, ``scale``
    sizes them as the character's size factor sizes a digit."""
    h, w, col = hand.height * scale, hand.width, 14.0
    mid = (hand.top + hand.base) / 2 + 0.5 * j[0]
    on_line = hand.base - w / 2 + 0.5 + 0.4 * j[0]  # a dot resting on the baseline
    grow = 1 + 0.12 * j[1]
    if char == ".":
        return _dot(hand, on_line, col, j)
    if char == ",":  # a dot on the baseline with a tail curling down and to the left
        bend = 0.04 * h * (1 + 0.5 * j[4])
        tail = 0.2 * h * grow
        return [np.array([[on_line - 0.1 * w, col + 0.1 * w],
                          [on_line + 0.5 * tail, col - 0.25 * tail + bend],
                          [on_line + tail, col - 0.55 * tail]])]  # fmt: skip
    if char in "-+":  # a short dash at mid-height, rising slightly to the right
        half = (0.2 if char == "-" else 0.22) * h * grow
        tilt = 0.06 + 0.06 * j[2]
        dash = np.array([[mid + tilt * half, col - half], [mid - tilt * half, col + half]])
        if char == "-":
            return [dash]
        return [dash, _vertical(hand, mid, col + 0.1 * half * j[4], half * (1 + 0.08 * j[5]))]
    if char == "/":  # from the baseline up to the digits' top, leaning more than the digits
        lean = (0.2 + 0.04 * j[4]) * h + hand.slant * h / 2
        return [
            np.array([[hand.base + 0.4 * j[0], col - lean], [hand.top + 0.4 * j[5], col + lean]])
        ]
    if char == ":":  # two dots, one above the baseline, one near the middle
        low = hand.base - w / 2 - 0.08 * h + 0.4 * j[0]
        high = low - 0.42 * h * grow
        return [*_dot(hand, low, col, j), *_dot(hand, high, col + hand.slant * (low - high), -j)]
    if char in "()":  # an arc taller than the digits, bulging away from what it encloses
        t = np.linspace(-1.0, 1.0, 9)
        rows = mid + t * 0.6 * h * grow
        bulge = (0.15 + 0.03 * j[4]) * h * (1 - t**2)
        cols = col + hand.slant * (mid - rows) + (-bulge if char == "(" else bulge)
        return [np.stack([rows, cols], axis=1)]
    raise ValueError(f"no strokes for {char!r}")  # check_text lets no other character through


def ink(lines: list[np.ndarray], width: float) -> np.ndarray:
    """The polylines inked with a pen ``width`` pixels wide: ``(28, 28)`` float32, 1 within
    ``width / 2`` of a line, falling to 0 over the next pixel (a one-pixel anti-aliased edge)."""
    out = np.zeros((1, 28, 28), np.float32)
    ink_many([lines], np.array([width]), out, np.array([0]))
    return out[0]


def ink_many(
    glyphs: list[list[np.ndarray]], widths: np.ndarray, out: np.ndarray, where: np.ndarray
) -> None:
    """:func:`ink` of many glyphs at once (each a list of polylines), into the blank cells
    ``out[where]`` (``out`` ``(C, 28, 28)``).

    Distances are computed only in a window around each glyph (as large as the largest glyph's
    box): a dot needs a few dozen pixels, not 784."""
    widths = np.asarray(widths, np.float32)
    lines = [line for lines in glyphs for line in lines]
    points = np.concatenate(lines).astype(np.float32)  # every point of every line, (P, 2)
    sizes = np.array([len(line) for line in lines])
    owner = np.repeat(np.repeat(np.arange(len(glyphs)), [len(g) for g in glyphs]), sizes)
    starts = np.ones(len(points), bool)
    starts[np.cumsum(sizes) - 1] = False  # a line's last point starts no segment
    first = np.flatnonzero(starts)  # (S_all,) each segment's first point
    glyph = owner[first]
    counts = np.bincount(glyph, minlength=len(glyphs))
    rank = np.arange(len(first)) - (np.cumsum(counts) - counts)[glyph]
    index = np.repeat(first[np.cumsum(counts) - 1][:, None], counts.max(), axis=1)  # padded
    index[glyph, rank] = first  # with copies of a glyph's last segment
    padded = np.stack([points[index], points[index + 1]], axis=2)  # (G, S, 2, 2)
    reach = (widths / 2 + 1)[:, None]  # ink reaches this far from a line
    points = padded.reshape(len(glyphs), -1, 2)
    low = np.clip(np.floor(points.min(axis=1) - reach), 0, 27).astype(int)  # (G, 2) row, col
    high = np.clip(np.ceil(points.max(axis=1) + reach), 0, 27).astype(int)
    size = (high - low).max(axis=0) + 1  # (2,) the window
    window = np.stack(np.mgrid[0 : size[0], 0 : size[1]], axis=-1).reshape(-1, 2)
    pixels = (window[None] + low[:, None]).astype(np.float32)  # (G, P, 2)
    starts, along = padded[:, :, 0], padded[:, :, 1] - padded[:, :, 0]  # (G, S, 2)
    length2 = np.maximum((along**2).sum(axis=2), 1e-6)  # (G, S)
    rel = pixels[:, :, None, :] - starts[:, None]  # (G, P, S, 2)
    t = np.clip(np.einsum("gpsk,gsk->gps", rel, along) / length2[:, None], 0.0, 1.0)
    gap = rel - t[..., None] * along[:, None]
    distance = np.sqrt(np.einsum("gpsk,gpsk->gps", gap, gap).min(axis=2))  # (G, P)
    coverage = np.clip(widths[:, None] / 2 - distance + 0.5, 0.0, 1.0).reshape(-1, *size)
    for k, (r, c), window in zip(where.tolist(), low.tolist(), coverage, strict=True):
        h, w = min(size[0], 28 - r), min(size[1], 28 - c)
        out[k, r : r + h, c : c + w] = window[:h, :w]


def cells(
    texts: list[str], digits: np.ndarray, scales: np.ndarray, seeds: np.ndarray
) -> np.ndarray:
    """One cell ``(28, 28)`` per character of ``texts``, all texts in a row: ``(C, 28, 28)``.

    ``digits`` ``(D, 28, 28)`` are the drawn digits of all texts in order; every other character
    is drawn in its own number's hand (a space is a blank cell), its size from ``scales`` ``(C,)``
    and its jitter from ``seeds`` ``(C,)`` int64. Texts of digits alone give ``digits`` itself.
    """
    chars = "".join(texts)
    codes = np.frombuffer(chars.encode(), np.uint8)
    is_digit = (codes >= ord("0")) & (codes <= ord("9"))
    if is_digit.all():
        return digits
    out = np.zeros((len(chars), 28, 28), np.float32)
    out[is_digit] = digits
    counts = [sum(c in DIGITS for c in text) for text in texts]
    hands = measure_hands(digits, counts)
    owner = np.repeat(np.arange(len(texts)), [len(t) for t in texts])
    drawn = np.flatnonzero(~is_digit & (codes != ord(SPACE)))
    if len(drawn) == 0:  # digits and spaces
        return out
    jitter = 2 * uniforms(GLYPH_KEY, np.asarray(seeds)[drawn], JITTER_SLOTS) - 1
    lines, widths = [], []
    for k, j in zip(drawn.tolist(), jitter, strict=True):
        hand = hands[owner[k]]
        lines.append(strokes(chars[k], hand, j, float(scales[k])))
        widths.append(hand.width * (1 + 0.06 * j[3]))
    # each character's glyphs together: alike in size and segments (a dot small, a bracket tall)
    for code in np.unique(codes[drawn]):
        for part in np.array_split(np.flatnonzero(codes[drawn] == code), 1 + len(drawn) // 512):
            ink_many([lines[i] for i in part], np.asarray(widths)[part], out, drawn[part])
    return out


def inked_columns(cells: np.ndarray, chars: str) -> tuple[np.ndarray, np.ndarray]:
    """The first inked column and the width of each cell ``(C, 28, 28)`` (ink above
    ``INK_LEVEL``), ``(C,)`` each: a space is ``SPACE_WIDTH`` blank columns, a cell without ink
    keeps all 28."""
    inked = cells.max(axis=1) > INK_LEVEL  # (C, 28)
    first = inked.argmax(axis=1)
    widths = 28 - inked[:, ::-1].argmax(axis=1) - first
    space = np.frombuffer(chars.encode(), np.uint8) == ord(SPACE)
    return np.where(space, 0, first), np.where(space, SPACE_WIDTH, widths)
