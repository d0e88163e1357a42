"""Digits as users get them, read by both judges: the sample-quality and usefulness parts of
:func:`numgen.evaluate.evaluate`.

A model is measured *as shipped* (DESIGN's "measure what users get"): a conditional model draws
through ``compose.digits`` — the path of ``numgen digits``, ``write`` and ``dataset`` — with its
own temperature, sampler and legibility check; the raw model (styles from the prior at
temperature 1, no check) stands beside it on request, never instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from numgen import compose, generate, judging, metrics, plots
from numgen import recognizer as judge
from numgen.data import Digits, to_uint8
from numgen.evaluate_config import EvalConfig
from numgen.judging import Judges, Reading
from numgen.models import Generator
from numgen.models.sampling import Sampling

SAMPLER_KEYS = ("steps", "solver", "guidance")  # a model config's sampler settings, if any
CONDITIONAL_KEYS = ("class_accuracy", "per_class_accuracy", "confusion")


def draw_as_shipped(
    model: Generator, n: int, seed: int, stats: dict[str, int], sampling: Sampling | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """``n`` digits as numgen's commands give them to users: a conditional model draws each digit
    ``d`` (0-9 in turn, n / 10 each) as ``numgen digits d --seed 10·seed + d`` does (its own
    temperature, sampler and legibility check, whose redraws are counted into ``stats``); an
    unconditional one as ``numgen sample`` does. ``sampling`` replaces the model's own. Returns images ``(n, 28, 28)`` in [0, 1] and
    the digits asked for ``(n,)`` (None for an unconditional model)."""
    if not model.conditional:
        return generate.sample(model, n, seed, sampling=sampling), None
    classes = model.config.num_classes
    asked = np.arange(n) % classes
    images = np.empty((n, 28, 28), np.float32)
    for digit in range(min(n, classes)):
        count = int((asked == digit).sum())
        seed_d = classes * seed + digit
        drawn = compose.digits(model, digit, count, seed_d, sampling, stats)
        images[asked == digit] = drawn
    return images, asked


def drawing_settings(model: Generator) -> dict:
    """How :func:`draw_as_shipped` draws: the model's own temperature, legibility check and
    sampler (where it has one)."""
    sampler = {k: v for k, v in model.config.to_dict().items() if k in SAMPLER_KEYS}
    if not model.conditional:  # numgen sample draws from the prior itself, unchecked
        return {"path": "numgen sample", "temperature": 1.0, "check": None, **sampler}
    path = "numgen digits (compose.digits)"
    sampling = model.sampling
    return {"path": path, "temperature": sampling.temperature, "check": sampling.check, **sampler}


def sample_section(
    model: Generator, judges: Judges, test: Digits, test_reading: Reading, train: Digits,
    config: EvalConfig, out_dir: Path,
) -> dict[str, dict | None]:  # fmt: skip
    """``samples``: the figures (:func:`numgen.judging.judge`) of ``config.samples`` digits drawn
    as shipped (:func:`draw_as_shipped`) with the legibility check's ``redraw_rate`` (styles
    redrawn per digit asked for); ``raw`` (with ``config.raw``): the same figures of the raw model
    (styles from the prior at temperature 1, no check, as :func:`numgen.generate.sample` draws);
    ``real``: the same figures for as many random training digits (recognised: the test digits);
    ``conditional``: for a conditional model (asked for digits 0-9 in turn) the judge's per-digit
    shares and confusion matrix. Draws ``samples.png``, ``classes.png``, and ``confusion.png``
    and ``per_class.png``.

    With ``config.draws`` k > 1, ``samples``, ``raw`` and ``real`` are each figure's mean over k
    independent draws (draw i with seed ``config.seed + i``: its own digits and its own real
    training digits), and ``spread`` gives their standard deviations; the pictures and the
    per-digit figures are the first draw's."""
    first, (generated, requested, reading) = _one_draw(
        model, judges, train, test_reading, config, config.seed
    )  # its digits and reading make the pictures; of the other draws, the figures only
    draws = [first] + [
        _one_draw(model, judges, train, test_reading, config, config.seed + i)[0]
        for i in range(1, config.draws)
    ]
    parts = {part: mean_and_spread([d[part] for d in draws]) for part in ("samples", "raw", "real")}
    spread = {part: sd for part, (_, sd) in parts.items()} if config.draws > 1 else None
    samples, raw, real = (parts[part][0] for part in ("samples", "raw", "real"))
    real["recognised"] = metrics.accuracy(test_reading.labels, test.labels)
    real["recognised_second"] = metrics.accuracy(test_reading.labels_second, test.labels)
    if spread:  # the real digits' recognised shares are the test set's: the same in every draw
        spread["real"] |= {"recognised": None, "recognised_second": None}
    classes = model.config.num_classes
    recognised = reading.labels
    shares = {
        "generated (as recognised)": np.bincount(recognised, minlength=classes) / len(recognised),
        "test set (true labels)": np.bincount(test.labels, minlength=classes) / len(test),
    }
    plots.save_grid(generated[:100], out_dir / "samples.png", ncols=10, scale=2)
    plots.plot_class_bars(shares, out_dir / "classes.png", "share of digits", "Digit frequencies")
    conditional = dict.fromkeys(CONDITIONAL_KEYS)
    if model.conditional:
        confusion = metrics.confusion_matrix(recognised, requested, classes)
        per_class = np.diag(confusion) / confusion.sum(axis=1)
        conditional = {
            "class_accuracy": metrics.accuracy(recognised, requested),
            "per_class_accuracy": per_class.tolist(),
            "confusion": confusion.tolist(),
        }
        plots.plot_confusion(confusion, out_dir / "confusion.png")
        plots.plot_class_bars(
            {"generated": per_class}, out_dir / "per_class.png", "share recognised as requested",
            "Generated digits recognised as the requested digit",
        )  # fmt: skip
    return {"samples": samples, "raw": raw, "real": real, "conditional": conditional,
            "spread": spread}  # fmt: skip


def _one_draw(
    model: Generator, judges: Judges, train: Digits, test_reading: Reading, config: EvalConfig,
    seed: int,
) -> tuple[dict, tuple]:  # fmt: skip
    """One draw of :func:`sample_section`'s figures with ``seed``: the digits as shipped (and the
    raw model's, with ``config.raw``) and as many random training digits, each judged against
    the test digits; and the digits as shipped (images, asked digits, reading)."""
    stats: dict[str, int] = {}
    generated, requested = draw_as_shipped(model, config.samples, seed, stats)
    reading = judging.read_digits(judges, generated)
    samples = judging.judge(reading, requested, test_reading, config.pr_k)
    samples["redraw_rate"] = stats["styles_redrawn"] / stats["digits"] if stats else None
    raw = None
    if config.raw:
        drawn = generate.sample(model, config.samples, seed, labels=requested)
        raw = judging.judge(
            judging.read_digits(judges, drawn), requested, test_reading, config.pr_k
        )
    real_digits = random_subset(train, config.samples, seed)
    real_reading = judging.read_digits(judges, real_digits.images / np.float32(255))
    real = judging.judge(real_reading, None, test_reading, config.pr_k)
    return {"samples": samples, "raw": raw, "real": real}, (generated, requested, reading)


def mean_and_spread(draws: list[dict | None]) -> tuple[dict | None, dict | None]:
    """Each figure's mean over ``draws`` (dicts of the same figures, or all None) and its sample
    standard deviation (None for one draw, and for a figure that is None)."""
    if draws[0] is None:
        return None, None
    mean, spread = {}, {}
    for key in draws[0]:
        values = [d[key] for d in draws]
        known = values[0] is not None
        mean[key] = float(np.mean(values)) if known else None
        spread[key] = float(np.std(values, ddof=1)) if known and len(values) > 1 else None
    return mean, spread


def random_subset(digits: Digits, n: int, seed: int) -> Digits:
    """``n`` of the digits, drawn without replacement by ``np.random.default_rng(seed)``, in their
    original order (all of them if there are no more). Not simply the first ``n``: the embedded
    digits are sorted by class."""
    if n >= len(digits):
        return digits
    index = np.sort(np.random.default_rng(seed).choice(len(digits), n, replace=False))
    return Digits(digits.images[index], digits.labels[index], f"{digits.source}, {n:,} drawn")


def usefulness_section(model: Generator, test: Digits, train: Digits, config: EvalConfig) -> dict:
    """Train-on-synthetic, test-on-real (Ravuri & Vinyals 2019): numgen's recognizer recipe
    trained on ``config.tstr`` digits drawn as shipped (0-9 in turn, :func:`draw_as_shipped`),
    and on as many random real training digits, each tested on the real test set."""
    n = config.tstr
    drawn, labels = draw_as_shipped(model, n, config.seed, {})
    synthetic = Digits(to_uint8(drawn), labels, f"{n:,} generated digits")
    real = random_subset(train, n, config.seed)
    return {"generated": tstr_accuracy(synthetic, test), "real": tstr_accuracy(real, test),
            "digits": n}  # fmt: skip


def tstr_accuracy(digits: Digits, test: Digits) -> float:
    """Test accuracy on ``test`` of a fresh recognizer trained on ``digits`` only, by numgen's
    recipe (``RecognizerConfig``'s defaults)."""
    return judge.train_recognizer(digits, test)[1]["test_accuracy"]
