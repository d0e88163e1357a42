"""From plans to finished rows: the pixels of each number as PNG bytes, and its metadata.

The same pixels as :func:`numgen.compose.write` (each digit drawn through ``model.draw``, resized
about its centre, cut to its inked columns, raised and spaced by its jitter), made for a whole
batch at once: digits are turned into grey levels in one step and the per-digit work is one
slice assignment, because at thousands of numbers a second every microsecond per digit counts.
"""

from __future__ import annotations

import math
import struct
import zlib

import numpy as np

from numgen import glyphs, legibility
from numgen.compose import to_pixels
from numgen.export.recipe import Batch, ExportConfig, split_of
from numgen.layout import ink_rows, on_the_line, resize_about_centre, seat, starts
from numgen.plots import to_uint8

CHUNK = 256  # images drawn together; part of the recipe, so it never depends on the workers


def png_bytes(rows: np.ndarray, level: int = 1) -> bytes:
    """A grey image as the bytes of an 8-bit greyscale PNG file. ``rows`` is uint8 ``(H, W + 1)``:
    column 0 holds each row's filter type (0, none) and columns 1.. the pixels.

    The PNG format (https://www.w3.org/TR/png/) is a signature and three chunks: IHDR (size and
    pixel format), IDAT (the filtered rows, zlib-compressed) and IEND. Written directly, it costs
    a third of what Pillow's encoder spends on these small images.
    """
    height, width = rows.shape[0], rows.shape[1] - 1

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey, no interlace
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows.tobytes(), level))
        + chunk(b"IEND", b"")
    )


def with_filter_column(pixels: np.ndarray) -> np.ndarray:
    """uint8 ``(H, W)`` -> ``(H, W + 1)`` with a zero filter byte before each row (see png_bytes)."""
    rows = np.zeros((pixels.shape[0], pixels.shape[1] + 1), dtype=np.uint8)
    rows[:, 1:] = pixels
    return rows


def render_rows(model, config: ExportConfig, batch: Batch) -> list[tuple[bytes, dict]]:
    """PNG bytes and metadata of each image of ``batch``, drawn in ONE ``model.draw`` call (and
    one for each round of the legibility check, see :mod:`numgen.legibility`).

    Metadata: ``index``, ``text`` (a string: "007" stays "007"), ``length`` (its characters),
    ``boxes`` (one ``[x0, y0, x1, y1]`` per character other than a space, in text order, pixels
    of the image, right and bottom edges exclusive, around every pixel of that character brighter
    than ``numgen.data.INK_LEVEL``), ``style_seed``, ``width``, ``height``, ``ink``, ``model``, ``split``.
    """
    chars = "".join(batch.texts)
    codes = np.frombuffer(chars.encode(), dtype=np.uint8)
    is_digit = (codes >= ord("0")) & (codes <= ord("9"))
    counts = [sum(c in glyphs.DIGITS for c in text) for text in batch.texts]
    sampling = config.sampling(model)
    # checked as `numgen write` checks
    styles = legibility.seeded(model, batch.style_seeds, sampling.temperature)
    drawn = legibility.draw_checked(
        model, styles, codes[is_digit] - ord("0"), np.array(counts), batch.seeds[is_digit],
        sampling=sampling,
    )  # fmt: skip
    cells = glyphs.cells(  # (C, 28, 28): the digits, and the other characters in their hand
        batch.texts, resize_about_centre(drawn, batch.scales[is_digit]), batch.scales, batch.seeds
    )
    first, widths = glyphs.inked_columns(cells, chars)  # (C,) inked columns of each character
    top, bottom = ink_rows(cells)  # (C,) inked rows
    lengths = [len(text) for text in batch.texts]
    grey = to_uint8(cells)
    rises = seat(on_the_line(batch.rises, bottom, is_digit, lengths), top, bottom)
    rows, d = [], 0
    for index, text, style_seed in zip(
        batch.indices, batch.texts, batch.style_seeds.tolist(), strict=True
    ):
        n = len(text)
        left, width = starts(widths[d : d + n], batch.gaps[d + 1 : d + n])
        canvas = np.zeros((28, width + 1), dtype=np.uint8)  # column 0: PNG filter bytes
        boxes = []
        for k in range(d, d + n):
            if chars[k] == glyphs.SPACE:
                continue
            r, x, w = int(rises[k]), int(left[k - d]), int(widths[k])
            src = grey[k, max(r, 0) : 28 + min(r, 0), first[k] : first[k] + w]
            region = canvas[max(-r, 0) : 28 + min(-r, 0), 1 + x : 1 + x + w]
            np.maximum(region, src, out=region)  # touching neighbours: the stronger ink wins
            boxes.append([x, max(int(top[k]) - r, 0), x + w, min(int(bottom[k]) - r + 1, 28)])
        meta = {"index": index, "text": text, "length": n, "boxes": boxes, "style_seed": style_seed}
        rows.append(finish(config, canvas, meta))
        d += n
    return rows


def scaled_boxes(boxes: list[list[int]], width: int, size: tuple[int, int]) -> list[list[int]]:
    """Boxes of a 28-pixel-high picture ``width`` wide, in the same picture resized to ``size``
    (height, width): scaled and rounded outwards."""
    sx, sy = size[1] / width, size[0] / 28
    return [
        [int(x0 * sx), int(y0 * sy), min(math.ceil(x1 * sx), size[1]),
         min(math.ceil(y1 * sy), size[0])]
        for x0, y0, x1, y1 in boxes
    ]  # fmt: skip


def finish(config: ExportConfig, canvas: np.ndarray, meta: dict) -> tuple[bytes, dict]:
    """The canvas (filter column + 28 rows) in the export's ink and height, and the rest of its
    metadata; at another height the boxes are scaled and rounded outwards."""
    if config.ink == "dark" or config.height != 28:  # width in proportion
        pixels = to_pixels(canvas[:, 1:], config.height, config.ink)
        meta["boxes"] = scaled_boxes(meta["boxes"], canvas.shape[1] - 1, pixels.shape)
        canvas = with_filter_column(pixels)
    meta.update(width=canvas.shape[1] - 1, height=canvas.shape[0], ink=config.ink,
                model=config.model, split=split_of(config, meta["index"]))  # fmt: skip
    return png_bytes(canvas, config.png_level), meta
