"""Train on synthetic, test on real, for chosen models alone: numgen's recognizer recipe trained on
6,000 drawings of each digit at the model's defaults (legibility check included), tested on the
10,000 MNIST test digits — `sharp.py --tstr`'s figure, without the rest of that bench.

    NUMGEN_DATA_DIR=../shared/data/mnist python bench/tstr.py --model onestep [--model DIR] \\
        [--out bench/results/NAME]

~7 minutes a model on 2 cores. Writes bench/results/tstr.{md,json} unless --out says where.
"""

from __future__ import annotations

import argparse
import time

import common
from numgen.data import load_digits
from numgen.hub import load
from sharp import drawings, tstr

PER_DIGIT = 6000  # as sharp.py --tstr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, help="NAME or DIR")
    parser.add_argument("--out", default="tstr")
    args = parser.parse_args()
    test = load_digits("mnist", "test", None)
    load_at_start = common.load_average()
    results = {}
    for name in args.model:
        began = time.perf_counter()
        images, labels = drawings(load(name), PER_DIGIT)
        results[name] = {"tstr": tstr(images, labels, test), "seconds": time.perf_counter() - began}
        print(name, results[name], flush=True)
    figures = {**common.context(load_at_start, env="NUMGEN_DATA_DIR=..."), "results": results}
    lines = [
        "# Train on synthetic, test on real",
        "",
        common.machine_line(figures),
        "",
        f"numgen's recognizer recipe trained on {PER_DIGIT:,} drawings of each digit at the "
        "model's defaults (check included), tested on the 10,000 MNIST test digits.",
        "",
        "| model | accuracy on real test digits |",
        "| --- | ---: |",
        *(f"| {name} | {r['tstr']:.2%} |" for name, r in results.items()),
    ]
    common.write_results(args.out, figures, "\n".join(lines))


if __name__ == "__main__":
    main()
