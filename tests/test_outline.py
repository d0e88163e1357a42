"""Crisp heights: solid strokes with a thin edge, the width the model drew, the same number."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from numgen import compose, glyphs, outline, pictures
from numgen.recognizer import Recognizer


def soft_stroke() -> np.ndarray:
    """A 28-pixel drawing with MNIST's soft edges: a bent stroke 3 pixels wide, blurred."""
    line = glyphs.ink([np.array([[5.0, 8.0], [14.0, 18.0], [23.0, 9.0]])], 3.0)
    blurred = np.asarray(Image.fromarray(line).resize((14, 14)).resize((28, 28)), np.float32)
    return np.clip(blurred, 0, 1)


def mid_grey_share(pixels: np.ndarray) -> float:
    """Of the inked pixels (ink > 0.15), the share with ink below 0.85."""
    ink = pixels[pixels > 0.15]
    return float((ink < 0.85).mean())


def test_strokes_are_solid_with_a_thin_edge_and_keep_their_width() -> None:
    drawing = soft_stroke()
    crisp = outline.crisp(drawing, 128)
    blurred = compose.to_pixels(drawing, 28)
    enlarged = np.asarray(
        Image.fromarray(blurred).resize(crisp.shape[::-1], Image.Resampling.LANCZOS)
    )
    assert crisp.shape == (128, 128) and crisp.dtype == np.float32
    assert mid_grey_share(crisp) <= 0.15 and mid_grey_share(enlarged / 255) >= 0.4
    scale = 128 / 28
    width_28, width_128 = (
        glyphs.pen_widths(drawing[None], 8)[0],
        glyphs.pen_widths(crisp[None], 1)[0],
    )
    assert width_128 / scale == pytest.approx(width_28, rel=0.1)
    assert crisp.sum() / scale**2 == pytest.approx(drawing.sum(), rel=0.1)  # as much ink


def test_a_stroke_thinner_than_a_pixel_stays_whole() -> None:
    # half a pixel wide: its ink rises and falls along it (0.2-0.7), so a fixed half-ink contour
    # cut it into beads (15 pieces before the contour followed the stroke's own peak)
    thin = glyphs.ink([np.array([[4.0, 6.0], [23.0, 20.0]])], 0.5)
    assert thin.max() < 0.8
    crisp = outline.crisp(thin, 96)
    assert ndimage.label(crisp >= 0.5)[1] == 1
    assert crisp.max() == 1.0


def test_faint_specks_are_dropped_and_full_ink_dots_kept() -> None:
    drawing = soft_stroke()
    drawing[20:22, 22:24] = [[0.31, 0.47], [0.28, 0.22]]  # a faint speck the flow left
    # a thin hand's full stop: as small as a speck, but full ink
    dot = glyphs.ink([np.array([[6.0, 23.0], [6.3, 23.3]])], 1.3)
    crisp = outline.crisp(np.maximum(drawing, dot), 96)
    scale = 96 / 28
    assert crisp[int(19 * scale) : int(23 * scale), int(21 * scale) : int(25 * scale)].max() == 0
    assert crisp[int(4 * scale) : int(8 * scale), int(21 * scale) : int(25 * scale)].max() == 1.0
    assert ndimage.label(crisp > 0)[1] == 2  # the stroke and the dot


def test_the_picture_at_a_height_is_the_crisp_outline(tmp_path) -> None:
    drawing = soft_stroke()
    np.testing.assert_array_equal(
        compose.to_pixels(drawing, 96, "dark"),
        255 - compose.to_pixels(drawing, 96),
    )
    expected = (np.clip(outline.crisp(compose.to_pixels(drawing), 96), 0, 1) * 255 + 0.5).astype(
        np.uint8
    )
    np.testing.assert_array_equal(compose.to_pixels(drawing, 96), expected)
    small = compose.to_pixels(drawing, 20)  # below 28: resampled as before
    assert small.shape == (20, 20) and mid_grey_share(small / 255) > 0


def test_a_tall_number_reads_as_the_same_number() -> None:
    """Read by cutting at blank columns, which needs digits apart: touching=0."""
    writer, judge = compose.Writer.from_pretrained("flow"), Recognizer.from_pretrained()
    for i, text in enumerate(["2026", "7193", "480562"]):
        small = writer.write(text, style_seed=i, seed=i, touching=0)
        tall = writer.write(text, style_seed=i, seed=i, height=96, touching=0)
        assert tall.height == 96
        assert pictures.read_number(judge, tall) == pictures.read_number(judge, small) == text
        assert mid_grey_share(np.asarray(tall) / 255) <= 0.25
