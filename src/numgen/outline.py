"""Crisp numbers at any height: the ink of a 28-pixel drawing redrawn as a clean stroke outline.

Scaling a 28-pixel drawing up enlarges its soft edges with it: at 128 pixels most of the inked
pixels are mid-grey (bench/results/text_marks.md), where a pen stroke scanned at that size is
solid with a thin anti-aliased edge. So, as fonts are drawn from distance fields, the drawing is
treated as a field: interpolated bicubically to the target size, a contour of it is the stroke's
edge, and each pixel's ink is its signed distance to that contour (the field's distance from the
contour's level over its gradient, in target pixels) turned into coverage over one pixel.

The contour lies at half the ink of the stroke it bounds (its peak within a pixel of the
drawing), not at half of full ink: a stroke narrower than a pixel is drawn with less than full
ink, and on the pixel grid its ink rises and falls along it (0.6, 0.4, 0.6 ...), so a fixed
half-ink contour drew such strokes as beads and broke the faint joins between strokes, which the
eye (and numgen's reader) sees whole at 28 pixels. A full-ink stroke keeps the half-ink contour,
so strokes keep the width the model drew; ink below ``HAZE`` is never a stroke. Marks smaller
than ``SPECK_AREA`` pixels of the drawing that nowhere reach ``SPECK_PEAK`` ink are faint specks
of the drawing, dropped rather than drawn as solid dots (a pen's dot, a full stop, is full ink).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

LEVEL = 0.5  # a stroke's edge: this share of its peak ink
HAZE = 0.3  # the lowest contour: fainter ink is haze, never a stroke
SPECK_AREA = 2.0  # pixels of the drawing (28 rows): smaller faint marks are specks
SPECK_PEAK = 0.75  # ... that nowhere reach this ink


def _enlarged(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(h, w)`` float32 -> ``(H, W)``, bicubic."""
    enlarged = F.interpolate(torch.from_numpy(image)[None, None], size=size, mode="bicubic")
    return enlarged[0, 0].numpy()


def crisp(canvas: np.ndarray, height: int) -> np.ndarray:
    """Ink ``(h, W)`` in [0, 1] (or uint8) -> ink ``(height, W')`` float32 in [0, 1], ``W'`` the
    width in proportion, with solid strokes and a one-pixel anti-aliased edge; for ``height``
    above ``h`` (below it, a field has no room for an edge of its own: resample instead)."""
    ink = np.asarray(canvas, np.float32)
    if canvas.dtype == np.uint8:
        ink = ink / 255
    size = (height, max(1, round(ink.shape[1] * height / ink.shape[0])))
    field = _enlarged(ink, size)
    # each pixel's stroke peak: the most ink within a pixel of it in the drawing
    peak = _enlarged(F.max_pool2d(torch.from_numpy(ink)[None, None], 3, 1, 1)[0, 0].numpy(), size)
    distance = field - np.maximum(LEVEL * peak, HAZE)  # ink above the contour's level
    gy, gx = np.gradient(distance)
    slope = np.maximum(np.hypot(gx, gy), 1e-6)  # ink per target pixel across the edge
    out = np.clip(distance / slope + 0.5, 0.0, 1.0)
    return _without_specks(out, field, (height / ink.shape[0]) ** 2)


def _without_specks(out: np.ndarray, field: np.ndarray, pixel_area: float) -> np.ndarray:
    """``out`` without its marks (4-connected) of less than ``SPECK_AREA`` drawing pixels
    (``pixel_area`` target pixels each) of ink whose field nowhere reaches ``SPECK_PEAK``."""
    from scipy import ndimage  # only when drawing above 28 pixels: import numgen loads no scipy

    marks, count = ndimage.label(out > 0)
    if count == 0:
        return out
    index = np.arange(1, count + 1)
    speck = (ndimage.sum_labels(out, marks, index) < SPECK_AREA * pixel_area) & (
        ndimage.maximum(field, marks, index) < SPECK_PEAK
    )
    return np.where(np.concatenate([[False], speck])[marks], 0.0, out)
