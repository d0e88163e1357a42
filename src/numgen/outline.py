"""Crisp numbers at any height: the ink of a 28-pixel drawing redrawn as a clean stroke outline.

Scaling a 28-pixel drawing up enlarges its soft edges with it: at 128 pixels most of the inked
pixels are mid-grey (bench/results/text_marks.md), where a pen stroke scanned at that size is
solid with a thin anti-aliased edge. So, as fonts are drawn from distance fields, the drawing is
treated as a field: interpolated bicubically to the target size, its half-ink contour is the
stroke's edge, and each pixel's ink is its signed distance to that contour (the field's distance
from half ink over its gradient, in target pixels) turned into coverage over one pixel. The
contour is the drawing's own half-ink contour, scaled, so the strokes keep the width the model
drew.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

LEVEL = 0.5  # the ink level whose contour is the edge of a stroke


def crisp(canvas: np.ndarray, height: int) -> np.ndarray:
    """Ink ``(h, W)`` in [0, 1] (or uint8) -> ink ``(height, W')`` float32 in [0, 1], ``W'`` the
    width in proportion, with solid strokes and a one-pixel anti-aliased edge; for ``height``
    above ``h`` (below it, a field has no room for an edge of its own: resample instead)."""
    ink = np.asarray(canvas, np.float32)
    if canvas.dtype == np.uint8:
        ink = ink / 255
    width = max(1, round(ink.shape[1] * height / ink.shape[0]))
    field = F.interpolate(torch.from_numpy(ink)[None, None], size=(height, width), mode="bicubic")
    field = field[0, 0].numpy()
    gy, gx = np.gradient(field)
    slope = np.maximum(np.hypot(gx, gy), 1e-6)  # ink per target pixel across the edge
    return np.clip((field - LEVEL) / slope + 0.5, 0.0, 1.0)
