"""How long `numgen data check` takes on full MNIST: ``numgen.data.check`` over the 60,000
training and 10,000 test digits (figures per split and exact duplicates between them), against
reading the files, measured in the same run.

    NUMGEN_DATA_DIR=../shared/data/mnist python bench/data_check.py [--repeats N]

This is where the check's old unit-test limit (under 5 s) lives now: a wall-clock figure on a
shared machine belongs in a bench. Writes bench/results/data_check.{md,json}.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from common import command, load_average, machine, machine_line, write_results
from numgen.data import DATA_DIR_ENV, check, read_mnist_dir


def seconds(function, repeats: int) -> float:
    """Median wall-clock seconds of ``function()`` over ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    data_dir = os.environ.get(DATA_DIR_ENV)
    if not data_dir:
        raise SystemExit(f"set {DATA_DIR_ENV} to the MNIST folder, e.g. ../shared/data/mnist")
    load_at_start = load_average()
    splits = {split: read_mnist_dir(data_dir, split) for split in ("train", "test")}
    read_s = seconds(lambda: [read_mnist_dir(data_dir, s) for s in splits], args.repeats)
    check_s = seconds(lambda: check(splits), args.repeats)
    figures = {
        "machine": machine(),
        "command": command(env="NUMGEN_DATA_DIR=..."),
        "digits": sum(len(d) for d in splits.values()),
        "read_s": read_s,
        "check_s": check_s,
        "check_over_read": check_s / read_s,
        "load_average": [load_at_start, load_average()],
    }
    text = "\n".join([
        "# `numgen data check` on full MNIST",
        "",
        machine_line(figures),
        "",
        "| step | median s | × reading the files |",
        "| --- | ---: | ---: |",
        f"| read the four IDX files (gzipped) | {read_s:.2f} | 1.0 |",
        f"| check: figures per split + duplicates across splits | {check_s:.2f} | "
        f"{check_s / read_s:.1f} |",
        "",
        f"{figures['digits']:,} digits, median of {args.repeats} runs each.",
    ])  # fmt: skip
    write_results("data_check", figures, text)
    print(text)


if __name__ == "__main__":
    main()
