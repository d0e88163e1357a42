"""The second judge (``judge2``, a residual network of another architecture than the recognizer
and the legibility checker) reads the digits bench/sharp.py measures: 1,000 drawings of each
digit (``compose.digits``, seed = digit) per model, as shipped and raw (no legibility check).

    NUMGEN_DATA_DIR=../shared/data/mnist .venv/bin/python bench/second_judge.py \\
        --model flow --model onestep

Writes ``bench/results/second_judge.{json,md}``.
"""

from __future__ import annotations

import argparse
import time

from common import RESULTS, command, load_average, machine, machine_line, write_results
from numgen.hub import load
from numgen.recognizer import SECOND_JUDGE, Recognizer
from sharp import drawings, recognised


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=None)
    parser.add_argument("--per-digit", type=int, default=1000)
    parser.add_argument("--out", default=str(RESULTS / "second_judge"))
    args = parser.parse_args()
    load_at_start, judge = load_average(), Recognizer.from_pretrained(SECOND_JUDGE)
    rows = {}
    for name in args.model or ["flow", "onestep"]:
        model = load(name)
        for label, check in (("as shipped", True), ("raw", False)):
            sampling = model.sampling_with(check=check)
            rows[f"{name}, {label}"] = recognised(
                judge, *drawings(model, args.per_digit, sampling=sampling)
            )
            print(name, label, rows[f"{name}, {label}"], flush=True)
    figures = {"date": time.strftime("%Y-%m-%d"), "command": command(), "machine": machine(),
               "load_average": [load_at_start, load_average()], "rows": rows}  # fmt: skip
    lines = [
        "# The second judge (judge2) reads the drawn digits",
        "",
        f"Measured {figures['date']}; {args.per_digit:,} drawings of each digit per row.",
        machine_line(figures),
        "",
        "| model | recognised by judge2 |",
        "| --- | ---: |",
        *(f"| {name} | {share:.2%} |" for name, share in rows.items()),
        "",
    ]
    write_results(args.out, figures, "\n".join(lines))


if __name__ == "__main__":
    main()
