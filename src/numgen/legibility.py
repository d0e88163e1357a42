"""The legibility check: a second, smaller recognizer reads every digit as it is drawn, and a
handwriting style under which a digit is misread is drawn again.

A realistic sampler also draws the rare ambiguous hand (a 4 that closes like a 9): real MNIST
has them too. For a writer that must be read, numgen redraws such styles, as a dataset maker
filters synthetic data. The check is rejection sampling in style space:

1. draw every digit in its style (round 0: the style its seed gives, as without the check);
2. the *checker* reads each digit; a style fails when, for any digit drawn in it, the checker's
   probability of the asked digit is below the sampling's ``check`` threshold (every digit of a
   number shares its number's style, so the whole number is redrawn);
3. a failed style is replaced by the next style of its own seed's stream (round r draws from
   :func:`round_seed` ``(seed, r)``), its digits keeping their own seeds, up to ``ROUNDS``
   rounds; a style that never passes keeps its best-read candidate.

Each number's pixels still depend only on its own text, style seed and digit seeds, never on
what else is drawn beside it. A style given by the caller (``--style-from IMAGE``) is the
user's hand and is never replaced.

The checker is the bundled ``checker`` (numgen's recognizer recipe, 8 channels instead of 16,
seed 1): a network apart from the judge that numgen's benches score digits with, so that the
judge's figures are not the checker's own opinion. Models opt in through the ``check``
threshold of their :class:`~numgen.models.sampling.Sampling` (saved with the weights, like the
temperature it was chosen with); ``None`` draws without.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache, partial

import numpy as np
import torch

from numgen import generate
from numgen.models import Generator
from numgen.models.sampling import Sampling, precision_context
from numgen.recognizer import Recognizer, predict

BUNDLED_CHECKER = "checker"
ROUNDS = 8  # redraws of a failed style (at the bundled flow's defaults 3.4 % of single digits
# and 14 % of the digits of 4-digit numbers are drawn again: bench/results/check_cost.md)

# round -> styles (len(which), style_dim) of the styles numbered ``which`` in that round
StyleRounds = Callable[[int, np.ndarray], np.ndarray]
# (images (N, 28, 28), asked digits (N,)) -> the checker's probability of each asked digit (N,)
Checker = Callable[[np.ndarray, np.ndarray], np.ndarray]


@cache
def bundled_checker(device: str) -> Recognizer:
    """The bundled checker on ``device``, loaded once per process."""
    return Recognizer.from_pretrained(BUNDLED_CHECKER, device)


def round_seed(seed: int, round_: int) -> int:
    """The seed of round ``round_`` of a style seed's stream: the seed itself in round 0."""
    if round_ == 0:
        return seed
    state = np.random.SeedSequence([seed % 2**64, round_]).generate_state(2, np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1  # < 2**63: any torch or NumPy seed


def seeded(model: Generator, seeds: np.ndarray, temperature: float | None = None) -> StyleRounds:
    """Styles each drawn from its own seed (a number's ``--style-seed``), at ``temperature``
    (default: the model's); round r draws from ``round_seed(seed, r)``."""
    seeds = np.asarray(seeds)

    def styles(round_: int, which: np.ndarray) -> np.ndarray:
        round_seeds = [round_seed(int(s), round_) for s in seeds[which]]
        return generate.seeded_styles(model, round_seeds, temperature)

    return styles


def stream(model: Generator, n: int, seed: int, temperature: float | None = None) -> StyleRounds:
    """``n`` styles drawn together with one ``seed`` (``numgen digits``); round r draws the ``n``
    from ``round_seed(seed, r)`` and takes the ones asked for."""

    def styles(round_: int, which: np.ndarray) -> np.ndarray:
        return generate.draw_styles(model, n, round_seed(seed, round_), temperature)[which]

    return styles


def given(styles: np.ndarray) -> StyleRounds:
    """Styles the caller chose, ``(N, style_dim)``: draw them with ``rounds=0``."""
    return lambda round_, which: np.asarray(styles)[which]


def asked_probability(checker: Recognizer, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The checker's probability of each image's asked digit: ``(N,)``."""
    _, probs = predict(checker, torch.from_numpy(np.asarray(images, np.float32)).unsqueeze(1))
    return probs[np.arange(len(labels)), labels]


def in_bfloat16(read: Checker, device_type: str) -> Checker:
    """``read`` with its network passes in bfloat16 (``Sampling.precision`` "bf16")."""

    def read_bf16(images: np.ndarray, labels: np.ndarray) -> np.ndarray:
        with precision_context("bf16", torch.device(device_type)):
            return read(images, labels)

    return read_bf16


def reader(checker: Recognizer) -> Checker:
    """The :data:`Checker` that reads with ``checker`` where it is called."""
    return partial(asked_probability, checker)


def draw_checked(
    model: Generator, styles: StyleRounds, labels: np.ndarray, lengths: np.ndarray,
    seeds: np.ndarray, rounds: int = ROUNDS, stats: dict[str, int] | None = None,
    sampling: Sampling | None = None, checker: Checker | None = None,
) -> np.ndarray:  # fmt: skip
    """Digits ``(D, 28, 28)``: style ``g`` drawn for the ``lengths[g]`` consecutive digits of
    ``labels`` (``(D,)`` ints) with their ``seeds`` and ``sampling`` (default: the model's);
    checked where its ``check`` is set, by ``checker`` (default: the bundled checker, read here;
    a server passes its own, batched with its model's calls).

    ``styles(r, which)`` gives round ``r``'s candidate styles of the styles numbered ``which``;
    ``rounds`` = 0 draws round 0 only (a style given by the caller). ``stats``, if given, counts
    what the check cost: ``digits`` asked for, ``styles_redrawn`` (a style once per round in which
    it is drawn again) and ``digits_redrawn`` (likewise per digit), added to what it holds.
    """
    stats = {} if stats is None else stats
    for key in ("digits", "styles_redrawn", "digits_redrawn"):
        stats.setdefault(key, 0)
    stats["digits"] += len(labels)
    labels, lengths = np.asarray(labels), np.asarray(lengths)
    owner = np.repeat(np.arange(len(lengths)), lengths)  # the style of each digit
    sampling = model.sampling if sampling is None else sampling
    images = generate.draw(
        model, styles(0, np.arange(len(lengths)))[owner], labels, seeds, sampling
    )
    threshold = sampling.check
    if threshold is None or rounds == 0:
        return images
    read = reader(bundled_checker(str(model.device))) if checker is None else checker
    if sampling.precision == "bf16":  # the check reads at the drawing's precision
        read = in_bfloat16(read, model.device.type)
    worst = np.full(len(lengths), np.inf)
    np.minimum.at(worst, owner, read(images, labels))
    for round_ in range(1, rounds + 1):
        failed = np.flatnonzero(worst < threshold)
        if len(failed) == 0:
            break
        redrawn = np.isin(owner, failed)  # every digit of a failed style
        stats["styles_redrawn"] += len(failed)
        stats["digits_redrawn"] += int(redrawn.sum())
        slot = np.searchsorted(failed, owner[redrawn])  # its style's row among the failed
        candidate = styles(round_, failed)[slot]
        drawn = generate.draw(model, candidate, labels[redrawn], seeds[redrawn], sampling)
        score = np.full(len(failed), np.inf)
        np.minimum.at(score, slot, read(drawn, labels[redrawn]))
        better = score > worst[failed]
        worst[failed[better]] = score[better]
        take = better[slot]
        images[np.flatnonzero(redrawn)[take]] = drawn[take]
    return images
