"""A check the export tests share: a row's boxes against its picture."""

from __future__ import annotations

import numpy as np

from numgen.data import INK_LEVEL


def check_boxes(pixels: np.ndarray, boxes: list[list[int]]) -> None:
    """Each box is tight (ink touches its four edges), the boxes run left to right (touching
    neighbours' boxes may overlap), and no ink lies outside them; ``pixels`` uint8 ``(H, W)``,
    light ink."""
    covered = np.zeros(pixels.shape, bool)
    for x0, y0, x1, y1 in boxes:
        ink = pixels[y0:y1, x0:x1] > INK_LEVEL * 255
        assert ink[0].any() and ink[-1].any() and ink[:, 0].any() and ink[:, -1].any()
        covered[y0:y1, x0:x1] = True
    assert not (pixels[~covered] > INK_LEVEL * 255 + 1).any()  # no ink outside the boxes
    assert all(a[0] < b[0] and a[2] < b[2] for a, b in zip(boxes, boxes[1:], strict=False))
