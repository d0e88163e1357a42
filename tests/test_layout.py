"""The layout of a number as a writer sets it down: hands, touching neighbours, exact boxes."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
from PIL import Image

from boxes import check_boxes
from numgen import export, layout
from numgen.errors import ComposeError
from numgen.hub import load


def bar(width: int) -> np.ndarray:
    """A 28×28 cell with a solid bar ``width`` columns wide, rows 6-21, from column 10."""
    cell = np.zeros((28, 28), np.float32)
    cell[6:22, 10 : 10 + width] = 0.8
    return cell


def test_touching_neighbours_overlap_and_keep_their_own_boxes() -> None:
    cells = np.stack([bar(9), bar(9), bar(3), bar(2)])
    placed = layout.Layout(np.ones(4, np.float32), np.zeros(4, int), np.array([-2, -3, -3]))
    canvas, boxes = layout.lay_out(cells, placed)
    m = layout.MARGIN
    # 9 wide, 2 columns under the next; a thin 1 (3 wide) runs 3 columns into the 9, all of it;
    # the next starts one column right of the 1's start, not 3 columns back (left of it)
    assert boxes == [(m, m + 9), (m + 7, m + 16), (m + 13, m + 16), (m + 14, m + 16)]
    assert canvas.shape == (28, m + 16 + m)
    inked = canvas.max(axis=0) > 0
    assert inked[m : m + 16].all() and not inked[:m].any() and not inked[m + 16 :].any()
    assert canvas.max() == pytest.approx(0.8)  # overlapping ink is the stronger one, not a sum


def test_a_number_written_high_or_low_keeps_its_ink_whole() -> None:
    cells = np.stack([bar(5), bar(5)])  # ink on rows 6-21
    for rise, row in ((9, 0), (-9, 27 - 15), (2, 4), (0, 6)):  # up by 6 at most, down by 6
        placed = layout.Layout(np.ones(2, np.float32), np.array([rise, rise]), np.array([3]))
        canvas, _ = layout.lay_out(cells, placed)
        assert canvas.sum() == pytest.approx(cells.sum())  # nothing cut at the edges
        assert np.flatnonzero(canvas.max(axis=1))[0] == row  # the bar's top row


def test_a_numbers_digits_sit_on_one_line_and_other_characters_keep_their_place() -> None:
    low, high, dash = bar(4), np.zeros((28, 28), np.float32), np.zeros((28, 28), np.float32)
    high[2:14, 10:14] = 0.8  # a digit whose ink ends 8 rows above the first's (rows 6-21)
    dash[12:14, 8:16] = 0.8  # a dash at mid-height
    third = np.roll(bar(4), 2, axis=0)  # rows 8-23: the median bottom of the three is row 21
    cells = np.stack([low, high, dash, third])
    placed = layout.Layout(np.ones(4, np.float32), np.zeros(4, int), np.array([3, 3, 3]))
    canvas, boxes = layout.lay_out(cells, placed, "12-3")
    bottoms = [np.flatnonzero(canvas[:, x0:x1].max(axis=1))[-1] for x0, x1 in boxes]
    assert bottoms[0] == bottoms[1] == bottoms[3] == 21  # the digits on their median line
    assert np.flatnonzero(canvas[:, boxes[2][0] : boxes[2][1]].max(axis=1)).tolist() == [12, 13]
    assert canvas.sum() == pytest.approx(cells.sum())  # moved, not cut
    rises = layout.on_the_line(np.array([1, 0, 0, 0, 2]), np.array([21, 13, 9, 23, 20]),
                               np.array([True, True, False, True, True]), [4, 1])  # fmt: skip
    assert rises.tolist() == [1, -8, 0, 2, 2]  # a number of one digit stays where it is


def test_a_hand_comes_with_its_seed() -> None:
    a, b = layout.hands(np.array([7, 8])), layout.hands(np.array([7]))
    assert a.size[0] == b.size[0] and a.spacing[0] == b.spacing[0] and a.drift[0] == b.drift[0]
    assert a.lift[0] == b.lift[0] and a.lift[0] != a.lift[1]
    assert a.spacing[0] != a.spacing[1]
    many = layout.hands(np.arange(4000), touching=0.2)
    assert many.size.min() >= layout.SIZES[0] and many.size.max() <= layout.SIZES[1]
    assert np.abs(many.drift).max() <= layout.DRIFT
    # where on the line a hand writes: all over ±LIFT rows, a third of hands beyond ±LIFT / 1.5
    assert np.abs(many.lift).max() <= layout.LIFT
    assert (np.abs(many.lift) > layout.LIFT / 1.5).mean() == pytest.approx(1 / 3, abs=0.03)
    assert many.touching.mean() == pytest.approx(0.2, abs=0.01)
    assert many.touching.max() <= 0.4


def jitter_of(texts: list[str], touching: float) -> tuple[np.ndarray, np.ndarray]:
    """The gaps of all characters of ``texts`` (each its own hand) and which may touch."""
    lengths = [len(t) for t in texts]
    u = np.random.default_rng(0).random((3, sum(lengths)))
    number = np.repeat(np.arange(len(texts)), lengths)
    may_touch = layout.touchable("".join(texts))
    first = np.cumsum([0, *lengths[:-1]])
    may_touch[first] = False  # a number's first character has no neighbour before it
    hand = layout.hands(np.arange(len(texts)), touching)
    _, rises, gaps = layout.jitter(u, hand, number, layout.positions(lengths), may_touch)
    longest = max(lengths) / 2
    assert np.abs(rises).max() <= round(layout.LIFT + layout.DRIFT * longest + layout.RISE)
    return gaps, may_touch


def test_digits_touch_in_the_share_asked_and_separators_never() -> None:
    texts = ["12.345,67"] * 3000
    gaps, may_touch = jitter_of(texts, touching=0.25)
    touching = gaps <= 0
    assert touching[may_touch].mean() == pytest.approx(0.25, abs=0.02)
    assert not touching[~may_touch].any()  # around the dot and the comma, and first characters
    assert gaps.min() >= -layout.MAX_OVERLAP
    gaps, may_touch = jitter_of(texts, touching=0.0)
    assert (gaps[may_touch] >= 1).all()


def test_touching_must_be_a_share() -> None:
    with pytest.raises(ComposeError, match="touching=0.7: choose a share"):
        layout.hands(np.array([1]), touching=0.7)
    with pytest.raises(ComposeError, match="touching=-0.1"):
        export.ExportConfig(count=1, touching=-0.1)


def test_dataset_rows_of_touching_digits_have_exact_boxes_and_repeat() -> None:
    cvae = load("cvae")
    config = export.ExportConfig(count=40, min_length=6, max_length=8, model="cvae", touching=0.5)
    rows = export.render_rows(cvae, config, export.plan(config, range(40)))
    overlapping = 0
    for png, meta in rows:
        pixels = np.asarray(Image.open(io.BytesIO(png)))
        check_boxes(pixels, meta["boxes"])
        overlapping += sum(
            a[2] > b[0] for a, b in zip(meta["boxes"], meta["boxes"][1:], strict=False)
        )
    assert overlapping >= 40  # of ~240 neighbouring pairs, about half touch, many overlap
    again = export.render_rows(cvae, config, export.plan(config, range(40)))
    digest = hashlib.sha256(b"".join(png for png, _ in rows)).hexdigest()
    assert digest == hashlib.sha256(b"".join(png for png, _ in again)).hexdigest()
    apart = export.ExportConfig(count=40, min_length=6, max_length=8, model="cvae", touching=0.0)
    for _, meta in export.render_rows(cvae, apart, export.plan(apart, range(40))):
        assert all(a[2] < b[0] for a, b in zip(meta["boxes"], meta["boxes"][1:], strict=False))
