"""What the legibility check costs: how many digits it draws again, and its share of the time.

With the bundled flow (or ``--model``) at its defaults: 1,000 drawings of each digit
(``compose.digits``, seed = digit) and 1,000 random 4-digit numbers (``compose.write``, style
seed and jitter seed i, as ``bench/sharp.py`` writes them), counting the digits drawn in every
round of the check (``numgen.legibility``); then digits/s with and without the check, timed in
turn (batches of 1,000 for 6 s each, twice).

    NUMGEN_DATA_DIR=../shared/data/mnist .venv/bin/python bench/check_cost.py

Writes ``bench/results/check_cost.{json,md}``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from common import RESULTS, command, load_average, machine, machine_line, write_results
from numgen import compose, legibility
from numgen.hub import load
from sharp import digits_per_s


def drawn_per_digit(model, draw_all) -> float:
    """Digits drawn (every round of the check) per digit asked for, while ``draw_all()`` runs."""
    counted = []
    plain = legibility.generate.draw

    def counting(model, styles, labels=None, seeds=None, sampling=None):
        counted.append(len(styles))
        return plain(model, styles, labels, seeds, sampling)

    legibility.generate.draw = counting
    try:
        asked = draw_all()
    finally:
        legibility.generate.draw = plain
    return sum(counted) / asked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="flow")
    parser.add_argument("--out", default=str(RESULTS / "check_cost"))
    args = parser.parse_args()
    load_at_start = load_average()
    model = load(args.model)
    if model.sampling.check is None:
        parser.error(f"{args.model} has no legibility check")
    rng = np.random.default_rng(2026)
    texts = ["".join(map(str, rng.integers(0, 10, 4))) for _ in range(1000)]

    def digits() -> int:
        for d in range(10):
            compose.digits(model, d, 1000, seed=d)
        return 10_000

    def numbers() -> int:
        for i, text in enumerate(texts):
            compose.write(model, text, style_seed=i, seed=i)
        return 4 * len(texts)

    figures = {"model": args.model, "date": time.strftime("%Y-%m-%d"), "machine": machine(),
               "command": command(), "check": model.sampling.check,
               "drawn_per_digit": drawn_per_digit(model, digits),
               "drawn_per_number_digit": drawn_per_digit(model, numbers), "rates": []}  # fmt: skip
    unchecked = model.sampling_with(check=False)
    for _ in range(2):
        with_check = digits_per_s(model, seconds=6)
        figures["rates"].append(
            {"with_check": with_check, "without": digits_per_s(model, 6, unchecked)}
        )
    figures["load_average"] = [load_at_start, load_average()]
    shares = [1 - r["with_check"] / r["without"] for r in figures["rates"]]
    lines = [
        f"# What the `{args.model}` model's legibility check costs (threshold {model.sampling.check})",
        "",
        f"Measured {figures['date']}.",
        machine_line(figures),
        "",
        f"- digits drawn per digit asked for, single digits (1,000 of each): "
        f"**{figures['drawn_per_digit']:.3f}**",
        f"- digits drawn per digit asked for, in 1,000 random 4-digit numbers (a number's whole "
        f"style is redrawn): **{figures['drawn_per_number_digit']:.3f}**",
        "- digits/s with and without the check, in turn: "
        + "; ".join(f"{r['with_check']:,.0f} against {r['without']:,.0f}" for r in figures["rates"])
        + f" (the check's share of the time: {min(shares):.0%}-{max(shares):.0%})",
        "",
    ]
    write_results(args.out, figures, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
