"""Two judges read every set of digits that numgen measures.

The *judge* is the bundled recognizer (``numgen.recognizer``'s CNN recipe); the *second judge*
is the bundled ``judge2``, a residual network of another architecture, trained apart (its own
seed) and used by nothing else: not by the legibility check (``numgen.legibility``'s checker
shares the judge's recipe, so its mistakes may be the judge's) and not to choose any setting.
Every "recognised" figure gives both judges' readings, and the Fréchet distance is measured in
both judges' feature spaces; precision, recall, confidence and class entropy are the judge's.

Images are float arrays ``(N, 28, 28)`` in [0, 1] (ink = 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from numgen import metrics
from numgen.recognizer import BUNDLED, SECOND_JUDGE, Recognizer, read

# the figures :func:`judge` gives, in the order reports show them
FIGURES = (
    "recognised", "recognised_second", "frechet", "frechet_second", "precision", "recall",
    "confidence", "class_entropy",
)  # fmt: skip


@dataclass(frozen=True)
class Judges:
    """The judge and the second judge."""

    first: Recognizer
    second: Recognizer

    @classmethod
    def bundled(cls, device: str | torch.device = "cpu") -> Judges:
        return cls(
            Recognizer.from_pretrained(BUNDLED, device),
            Recognizer.from_pretrained(SECOND_JUDGE, device),
        )


@dataclass(frozen=True)
class Reading:
    """What both judges read in ``N`` digits."""

    labels: np.ndarray  # (N,) the judge's labels
    probs: np.ndarray  # (N, 10) the judge's probabilities
    feats: np.ndarray  # (N, 128) the judge's features
    labels_second: np.ndarray  # (N,) the second judge's labels
    feats_second: np.ndarray  # (N, 128) the second judge's features


def read_digits(judges: Judges, images: np.ndarray) -> Reading:
    """Both judges' reading of ``images`` ``(N, 28, 28)`` in [0, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).unsqueeze(1)
    labels, probs, feats = read(judges.first, x)
    labels_second, _, feats_second = read(judges.second, x)
    return Reading(labels, probs, feats, labels_second, feats_second)


def judge(
    reading: Reading, asked: np.ndarray | None, reference: Reading, pr_k: int = 3
) -> dict[str, float | None]:
    """The figures of digits read as ``reading`` against real ``reference`` digits (MNIST's test
    set): ``recognised`` / ``recognised_second`` (the share each judge reads as ``asked``,
    ``(N,)`` labels; None without), ``frechet`` / ``frechet_second`` (in each judge's features),
    ``precision`` and ``recall`` (Kynkäänniemi et al. 2019, ``pr_k`` neighbours), the judge's
    mean ``confidence`` and the ``class_entropy`` (nats) of its label histogram."""
    precision, recall = metrics.precision_recall(reference.feats, reading.feats, k=pr_k)
    known = asked is not None
    return {
        "recognised": metrics.accuracy(reading.labels, asked) if known else None,
        "recognised_second": metrics.accuracy(reading.labels_second, asked) if known else None,
        "frechet": metrics.frechet_distance(reading.feats, reference.feats),
        "frechet_second": metrics.frechet_distance(reading.feats_second, reference.feats_second),
        "precision": precision,
        "recall": recall,
        "confidence": metrics.mean_confidence(reading.probs),
        "class_entropy": metrics.class_histogram_entropy(reading.labels),
    }
