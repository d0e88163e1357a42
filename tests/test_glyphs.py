"""Characters other than digits: measured hands, strokes placed as writers place them, widths
matching the digits', seeded jitter, spaces."""

from __future__ import annotations

import numpy as np
import pytest

from numgen import compose, glyphs, layout

HAND = glyphs.Hand(width=3.0, slant=0.0, top=5.0, base=23.0)
STILL = np.zeros(glyphs.JITTER_SLOTS)  # no jitter


def drawn(char: str, hand: glyphs.Hand = HAND, j: np.ndarray = STILL) -> np.ndarray:
    return glyphs.ink(glyphs.strokes(char, hand, j), hand.width)


def rows_inked(cell: np.ndarray) -> np.ndarray:
    return np.flatnonzero(cell.max(axis=1) >= glyphs.HALF_INK)


@pytest.mark.parametrize("width", [2.0, 2.8, 4.0])
def test_pen_width_is_measured_alike_for_every_mark(width: float) -> None:
    hand = glyphs.Hand(width=width, slant=0.2, top=5.0, base=23.0)
    marks = [glyphs.ink(glyphs.strokes(c, hand, STILL), width) for c in glyphs.SEPARATORS]
    line = glyphs.ink([np.array([[4.0, 10.0], [24.0, 16.0]])], width)
    ring = glyphs.ink([np.stack([14 + 8 * np.sin(t), 14 + 6 * np.cos(t)], axis=1)
                       for t in [np.linspace(0, 2 * np.pi, 40)]], width)  # fmt: skip
    measured = glyphs.pen_widths(np.stack([*marks, line, ring]))
    np.testing.assert_allclose(measured, width, atol=0.32)


@pytest.mark.parametrize("width", [2.5, 2.8, 4.0])
def test_stroke_width_of_a_long_stroke_is_its_width(width: float) -> None:
    line = glyphs.ink([np.array([[4.0, 10.0], [24.0, 16.0]])], width)
    ring = glyphs.ink([np.stack([14 + 8 * np.sin(t), 14 + 6 * np.cos(t)], axis=1)
                       for t in [np.linspace(0, 2 * np.pi, 40)]], width)  # fmt: skip
    np.testing.assert_allclose(glyphs.stroke_widths(np.stack([line, ring])), width, rtol=0.08)
    np.testing.assert_allclose(glyphs.stroke_widths(line[None], upsample=4), width, rtol=0.03)


def test_slant_is_columns_right_per_row_up() -> None:
    upright = glyphs.ink([np.array([[4.0, 14.0], [24.0, 14.0]])], 3)
    leaning = glyphs.ink([np.array([[24.0, 10.0], [4.0, 16.0]])], 3)  # 6 right over 20 up
    np.testing.assert_allclose(glyphs.slants(np.stack([upright, leaning])), [0, 0.3], atol=0.02)


def test_marks_sit_where_writers_put_them() -> None:
    mid = (HAND.top + HAND.base) / 2
    stop, comma, dash = drawn("."), drawn(","), drawn("-")
    assert abs(rows_inked(stop).max() - HAND.base) <= 1  # on the baseline
    assert rows_inked(comma).max() >= HAND.base + 2  # dipping below it
    assert abs(rows_inked(dash).mean() - mid) <= 1 and len(rows_inked(dash)) <= 4  # mid-height
    slash, paren = drawn("/"), drawn("(")
    assert (
        abs(rows_inked(slash).min() - HAND.top) <= 2
        and abs(rows_inked(slash).max() - HAND.base) <= 2
    )
    assert rows_inked(paren).min() < HAND.top and rows_inked(paren).max() > HAND.base  # taller
    colon = drawn(":")
    runs = np.flatnonzero(np.diff(np.concatenate([[0], colon.max(axis=1) >= 0.5, [0]])))
    assert len(runs) == 4  # two dots, one above the other
    plus = drawn("+")
    assert len(rows_inked(plus)) > 2 * len(rows_inked(dash))  # a dash with a bar through it


def test_the_hand_is_measured_from_the_numbers_own_digits() -> None:
    thin = glyphs.ink([np.array([[23.0, 14.0], [6.0, 17.0]])], 2.0)
    thick = glyphs.ink([np.array([[20.0, 12.0], [8.0, 12.0]])], 4.0)
    hands = glyphs.measure_hands(np.stack([thin, thin, thick]), [2, 0, 1])
    # the fast width (the capsule's, a 4-pixel stroke measured within 5 %), calibrated to pen
    # widths of drawn digits
    capsules = glyphs.stroke_widths(np.stack([thin, thick]))
    assert capsules[1] == pytest.approx(4, rel=0.05)
    assert hands[0].width == pytest.approx(glyphs.pen_of_capsules(capsules[:1])[0])
    assert hands[2].width == pytest.approx(glyphs.pen_of_capsules(capsules[1:])[0])
    assert hands[0].slant == pytest.approx(3 / 17, abs=0.03) and hands[2].slant == pytest.approx(0)
    assert (hands[0].top, hands[0].base) == (5, 24) and (hands[2].top, hands[2].base) == (6, 22)
    assert hands[1] == glyphs.DEFAULT_HAND  # a number without digits
    cells = glyphs.cells(["1.", "/1"], np.stack([thin, thick]), np.ones(4), np.arange(4))
    widths = glyphs.pen_widths(cells[[1, 2]])
    np.testing.assert_allclose(
        widths, [hands[0].width, hands[2].width], atol=0.4
    )  # each in its own number's pen


def test_the_hand_is_the_median_of_all_of_a_numbers_digits() -> None:
    thin = glyphs.ink([np.array([[23.0, 14.0], [6.0, 17.0]])], 2.0)
    thick = glyphs.ink([np.array([[23.0, 14.0], [6.0, 17.0]])], 4.0)
    # a phone number's first four digits thin, its last five thick: the hand is thick
    hand = glyphs.measure_hands(np.stack([thin] * 4 + [thick] * 5), [9])[0]
    assert hand.width == pytest.approx(glyphs.pen_of_capsules(glyphs.stroke_widths(thick[None]))[0])


def test_jitter_comes_from_each_characters_seed() -> None:
    digits = np.stack([drawn("/")] * 2)
    a = glyphs.cells(["1-1"], digits, np.ones(3), np.array([5, 6, 7]))
    np.testing.assert_array_equal(a, glyphs.cells(["1-1"], digits, np.ones(3), np.array([9, 6, 8])))
    b = glyphs.cells(["1-1"], digits, np.ones(3), np.array([5, 16, 7]))
    assert not np.array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[[0, 2]], digits)  # digits are passed through untouched
    assert glyphs.cells(["12"], digits, np.ones(2), np.arange(2)) is digits


@pytest.fixture(scope="module")
def cvae(inked_cvae):
    return inked_cvae


def test_a_space_is_wider_than_any_gap_between_digits(cvae) -> None:
    widest_gap = round(layout.SPACINGS[1] + layout.SPACING_JITTER)
    for seed in range(5):
        ink = np.asarray(compose.write(cvae, "1 1", style_seed=seed, seed=seed)).max(axis=0) > 0
        columns = np.flatnonzero(ink)
        blank_runs = np.diff(columns) - 1
        assert blank_runs.max() >= glyphs.SPACE_WIDTH + 2 > widest_gap


def test_a_number_with_separators_is_repeatable_and_keeps_its_digits(cvae) -> None:
    a = np.asarray(compose.write(cvae, "02.12.2026", style_seed=1, seed=2))
    np.testing.assert_array_equal(a, np.asarray(compose.write(cvae, "02.12.2026", style_seed=1,
                                                              seed=2)))  # fmt: skip
    assert not np.array_equal(
        a, np.asarray(compose.write(cvae, "02.12.2026", style_seed=1, seed=3))
    )
    # the digits are those of the same number without its dots: the same draw, the same seeds
    canvas, boxes = layout.lay_out(
        np.stack([drawn(c) if c != " " else np.zeros((28, 28)) for c in "/ -/"]),
        layout.Layout(np.ones(4), np.zeros(4, int), np.full(3, 2)), "/ -/",
    )  # fmt: skip
    assert len(boxes) == 3 and boxes[1][0] - boxes[0][1] == 2 + glyphs.SPACE_WIDTH + 2
