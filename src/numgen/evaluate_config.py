"""What ``numgen evaluate`` measures on, and how much of it: :class:`EvalConfig`, shared by
:mod:`numgen.evaluate` and :mod:`numgen.evaluate_samples` (so neither imports the other's)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from numgen.config import Limit, check_fields


@dataclass
class EvalConfig:
    """What to measure on, and how much of it. The defaults are the evaluation issue's protocol;
    tests shrink the sizes."""

    # generated digits (a CVAE draws digits 0-9 in turn: 1,000 each), and as many random training
    # digits for the real-data reference: Fréchet distances compare only at equal sizes
    samples: int = 10_000
    iwae_k: int = 1000  # importance samples per test digit
    iwae_digits: int = 1000  # random test digits with an IWAE estimate (cost: N·K decodes)
    knn_k: int = 5  # neighbours for the k-NN accuracy of test encodings
    grid_n: int = 30  # grid points per side of the original project's grid test
    grid_lo: float = -1.5
    grid_hi: float = 1.5
    grid_k: int = 10  # nearest test encodings whose majority labels a grid point
    pr_k: int = 3  # neighbourhood size of precision and recall (Kynkäänniemi et al. use 3)
    seed: int = 0  # every random draw: binarization, importance samples, ELBO noise, samples
    dataset: str = "mnist"  # "mnist" or "embedded" (the offline subset, for quick checks)
    data_dir: str | None = None
    # train-on-synthetic, test-on-real: a fresh recognizer trained on this many generated digits
    # (and another on as many real ones); 0 = not measured (it trains two networks)
    tstr: int = 0
    # also measure the raw model (styles at temperature 1, no legibility check) beside the model
    # as shipped
    raw: bool = False
    # independent draws of the sample-quality figures (seeds seed, seed + 1, ...), each figure
    # the mean over them, with its standard deviation: one draw of 10,000 digits moves the
    # Fréchet distance by a few hundredths (bench/results/metric_spread.md)
    draws: int = 1

    LIMITS: ClassVar[dict[str, Limit]] = {
        "samples": Limit(1, 10**7),
        "iwae_k": Limit(1, 10**6),
        "iwae_digits": Limit(2, 10_000, "2 for a standard error; the test set has 10,000"),
        "knn_k": Limit(1, 1000),
        "grid_n": Limit(1, 100),
        "grid_k": Limit(1, 1000),
        "pr_k": Limit(1, 100),
        "seed": Limit(0, 2**32 - 1),
        "tstr": Limit(0, 10**6, "a recognizer trains on them, as on MNIST's 60,000"),
        "draws": Limit(1, 100),
    }

    def __post_init__(self) -> None:
        check_fields(self, self.LIMITS)
        if self.samples <= self.pr_k:
            raise ValueError(f"samples={self.samples}: must exceed pr_k={self.pr_k}")
        if not self.grid_lo < self.grid_hi:
            raise ValueError(f"grid range [{self.grid_lo}, {self.grid_hi}]: low must be below high")
        if self.dataset not in ("mnist", "embedded"):
            raise ValueError(f"dataset={self.dataset!r}: use 'mnist' or 'embedded'")
        if 0 < self.tstr < 10:
            raise ValueError(f"tstr={self.tstr}: 0 (not measured) or at least 10 digits")
