"""The legibility check: which style each number ends up with, and that it holds everywhere a
number or digit is drawn (compose, export, CLI)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from numgen import compose, export, generate, legibility
from numgen.cli.main import main
from numgen.errors import ConfigError
from numgen.export import recipe
from numgen.hub import load, save_pretrained
from numgen.layout import Layout
from numgen.models import FlowConfig
from numgen.recognizer import SECOND_JUDGE, Recognizer
from tiny_models import tiny_flow

THRESHOLD = 0.5


def ink_score(checker, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """A stand-in checker that reads pixels only: brighter digits pass (deterministic, and
    about half of a tiny untrained flow's digits fail at THRESHOLD)."""
    return (np.asarray(images).reshape(len(images), -1).mean(axis=1) * 1000 + labels * 0.1) % 1


@pytest.fixture
def checked(monkeypatch):
    """A tiny flow with a check, read by ``ink_score`` instead of the bundled checker."""
    torch.manual_seed(0)
    model = tiny_flow("cvae", check=THRESHOLD)
    monkeypatch.setattr(legibility, "asked_probability", ink_score)
    return model


def expected(model, styles, labels, lengths, seeds, rounds=legibility.ROUNDS) -> np.ndarray:
    """The check's rule, one number at a time: the first round whose worst digit passes, else the
    first best-scoring round."""
    out, start = [], 0
    for g, n in enumerate(lengths):
        mine = slice(start, start + n)
        best = None
        for round_ in range(rounds + 1):
            style = styles(round_, np.array([g]))
            drawn = generate.draw(model, np.repeat(style, n, axis=0), labels[mine], seeds[mine])
            score = ink_score(None, drawn, labels[mine]).min()
            if best is None or score > best[0]:
                best = (score, drawn)
            if score >= THRESHOLD:
                break
        out.append(best[1])
        start += n
    return np.concatenate(out)


def test_round_seeds_are_the_seed_first_then_new_and_fixed() -> None:
    assert legibility.round_seed(7, 0) == 7
    seeds = [legibility.round_seed(7, r) for r in range(1, 6)]
    assert len(set(seeds)) == 5 and 7 not in seeds
    assert seeds == [legibility.round_seed(7, r) for r in range(1, 6)]
    assert all(0 <= s < 2**63 for s in seeds + [legibility.round_seed(-3, 2)])


def test_a_failed_style_is_redrawn_whole_and_the_rest_stays(checked) -> None:
    texts = ["2026", "7", "314", "99"]
    lengths = np.array([len(t) for t in texts])
    labels = np.array([int(c) for c in "".join(texts)])
    seeds = generate.digit_seeds(5, len(labels))
    styles = legibility.seeded(checked, np.array([11, 12, 13, 14]))
    got = legibility.draw_checked(checked, styles, labels, lengths, seeds)
    close = {"rtol": 0, "atol": 1e-5}  # a batch's size moves the last bits of a conv's sums
    np.testing.assert_allclose(got, expected(checked, styles, labels, lengths, seeds), **close)
    first = legibility.draw_checked(checked, styles, labels, lengths, seeds, rounds=0)
    owner = np.repeat(np.arange(4), lengths)
    worst = [ink_score(None, first[owner == g], labels[owner == g]).min() for g in range(4)]
    for g in range(4):  # numbers that passed keep their first style; at least one did not
        if worst[g] >= THRESHOLD:
            np.testing.assert_array_equal(got[owner == g], first[owner == g])
    assert min(worst) < THRESHOLD and not np.array_equal(got, first)
    # each number alone gives the same pixels as drawn beside the others
    alone = legibility.draw_checked(
        checked, lambda r, which: styles(r, which + 2), labels[owner == 2], lengths[2:3],
        seeds[owner == 2],
    )  # fmt: skip
    np.testing.assert_allclose(alone, got[owner == 2], **close)


def test_without_a_threshold_nothing_is_read_or_redrawn(monkeypatch) -> None:
    torch.manual_seed(0)
    model = tiny_flow("cvae")
    assert model.sampling.check is None
    monkeypatch.setattr(legibility, "asked_probability", lambda *a: pytest.fail("read"))
    styles = legibility.stream(model, 6, seed=3)
    got = legibility.draw_checked(model, styles, np.full(6, 4), np.ones(6, int), np.arange(6))
    plain = generate.draw(model, generate.draw_styles(model, 6, 3), 4, np.arange(6))
    np.testing.assert_array_equal(got, plain)


def test_compose_checks_digits_and_seeded_numbers_but_keeps_a_given_style(checked) -> None:
    sevens = compose.digits(checked, 7, 12, seed=1)
    styles = legibility.stream(checked, 12, seed=1)
    seeds = generate.digit_seeds(1, 12)
    np.testing.assert_allclose(
        sevens, expected(checked, styles, np.full(12, 7), np.ones(12, int), seeds), atol=1e-5
    )
    assert (ink_score(None, sevens, np.full(12, 7)) >= THRESHOLD).mean() > 0.9
    # a style given by the caller is the user's hand: drawn as given, never replaced
    style = compose.style_latent(checked, 0)
    unchecked = tiny_flow("cvae")
    unchecked.load_state_dict(checked.state_dict())
    for text in ("80", "1234", "5"):
        given = compose.write(checked, text, style=style, seed=2)
        assert np.array_equal(
            np.asarray(given), np.asarray(compose.write(unchecked, text, style, seed=2))
        )
    # a seeded style is checked (and some redrawn) as the whole number
    redrawn = [
        s for s in range(12)
        if not np.array_equal(
            np.asarray(compose.write(checked, "2026", style_seed=s, seed=2)),
            np.asarray(compose.write(unchecked, "2026", style_seed=s, seed=2)),
        )
    ]  # fmt: skip
    assert 0 < len(redrawn) < 12


def test_export_rows_are_what_write_draws_with_the_check(checked) -> None:
    cfg = recipe.ExportConfig(count=8, min_length=2, max_length=4, model="tiny")
    batch = recipe.plan(cfg, range(8))
    rows = export.render_rows(checked, cfg, batch)
    ends = np.cumsum([len(t) for t in batch.texts])
    for i, (png, meta) in enumerate(rows):
        digits = slice(ends[i] - len(batch.texts[i]), ends[i])
        layout = Layout(batch.scales[digits], batch.rises[digits], batch.gaps[digits][1:])
        styles = legibility.seeded(checked, np.array([meta["style_seed"]]))
        [(canvas, _)] = compose.render(
            checked, [meta["text"]], styles, [layout], batch.seeds[digits]
        )
        picture = np.asarray(Image.open(io.BytesIO(png)))
        np.testing.assert_array_equal(picture, compose.to_pixels(canvas))
    assert recipe.ExportConfig(count=8, check=False).command().endswith("--no-check")


def test_the_bundled_flow_passes_the_bundled_checker() -> None:
    """The real weights: every drawn 4 reads as a 4 to the checker at the flow's threshold
    (or is the best of its rounds), where some raw draws do not."""
    flow = load("flow")
    assert flow.sampling.check == 0.8
    fours = compose.digits(flow, 4, 300, seed=0)
    checker = Recognizer.from_pretrained(legibility.BUNDLED_CHECKER)
    passed = legibility.asked_probability(checker, fours, np.full(300, 4)) >= 0.8
    raw = compose.digits(flow, 4, 300, seed=0, sampling=flow.sampling_with(check=False))
    raw_passed = legibility.asked_probability(checker, raw, np.full(300, 4)) >= 0.8
    assert passed.mean() >= 0.995 and raw_passed.mean() < passed.mean()
    kept = raw_passed  # a style that passed in round 0 is kept as it was
    np.testing.assert_array_equal(fours[kept], raw[kept])


def test_bad_thresholds_are_refused_and_the_cli_can_turn_the_check_off(tmp_path, capsys) -> None:
    for bad in (0.0, 1.0, 1.5, float("nan")):
        with pytest.raises(ConfigError, match="check="):
            FlowConfig(base=tiny_flow("cvae").config.base, check=bad)
    model = tiny_flow("cvae", check=0.9)
    save_pretrained(model, tmp_path / "m")
    assert load(tmp_path / "m").sampling.check == 0.9
    pictures = []
    for flag in ("--check", "--no-check"):
        out = tmp_path / f"w{flag}.png"
        assert main(["write", "42", "--model", str(tmp_path / "m"), flag, "--out", str(out)]) == 0
        pictures.append(np.asarray(Image.open(out)))
    # an untrained flow's "42" fails the real checker: checked, its style was redrawn
    assert pictures[0].shape[0] == 28 and not np.array_equal(*pictures)
    capsys.readouterr()


def test_the_check_never_reads_with_the_second_judge() -> None:
    """The second judge (numgen.judging) must stay independent of what the check filtered."""
    assert legibility.BUNDLED_CHECKER != SECOND_JUDGE
    assert legibility.bundled_checker("cpu").config.arch == "cnn"
