"""`numgen dataset --length 6` as a user runs it: six-digit numbers per second into WebDataset
shards (the default format) for each model, whole processes (start-up and the card included),
one after the other in the same run, so that the rates compare with each other; and the same
rows from ``numgen.export.NumberStream`` through a 2-worker PyTorch DataLoader (default model),
as a training loop would take them. Both split the rows into two shards, one per worker.

    NUMGEN_DATA_DIR=../shared/data/mnist .venv/bin/python bench/dataset_speed.py \\
        --model flow --model onestep --model cvae --count 3000

Writes ``bench/results/dataset_speed.{json,md}``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import RESULTS, command, load_average, machine, machine_line, write_results


def stream_rows_per_s(count: int) -> float:
    """Rows/s of the default export's NumberStream through a 2-worker DataLoader, start-up
    (the workers loading the model) included."""
    from torch.utils.data import DataLoader

    from numgen.export import ExportConfig, NumberStream

    config = ExportConfig(count=count, min_length=6, max_length=6, shard_size=count // 2)
    began = time.perf_counter()
    rows = sum(1 for _ in DataLoader(NumberStream(config), batch_size=None, num_workers=2))
    return rows / (time.perf_counter() - began)


def numbers_per_s(model: str | None, count: int, precision: str | None = None) -> float:
    """Numbers/s of one `numgen dataset --length 6` process (the default model if None, at
    ``--precision`` where given)."""
    cli = Path(sys.executable).with_name("numgen")
    with tempfile.TemporaryDirectory() as folder:
        options = [] if model is None else ["--model", model]
        options += [] if precision is None else ["--precision", precision]
        args = [str(cli), "dataset", "--length", "6", "--count", str(count), *options,
                "--shard-size", str(count // 2),
                "--out", str(Path(folder) / "data")]  # fmt: skip
        began = time.perf_counter()
        subprocess.run(args, check=True, capture_output=True)
        return count / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=None)
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument(
        "--precision", action="append", choices=("bf16",), help="also each model at it"
    )
    parser.add_argument("--out", default=str(RESULTS / "dataset_speed"))
    args = parser.parse_args()
    load_at_start = load_average()
    rows = {"(default)": numbers_per_s(None, args.count)}
    rows["(default), NumberStream into a 2-worker DataLoader"] = stream_rows_per_s(args.count)
    rows |= {name: numbers_per_s(name, args.count) for name in args.model or []}
    for precision in args.precision or []:
        for name in [None, *(args.model or [])]:
            label = f"{name or '(default)'} --precision {precision}"
            rows[label] = numbers_per_s(name, args.count, precision)
    figures = {"date": time.strftime("%Y-%m-%d"), "command": command(), "machine": machine(),
               "load_average": [load_at_start, load_average()], "count": args.count,
               "rows": rows}  # fmt: skip
    lines = [
        "# `numgen dataset --length 6`: numbers per second, whole processes",
        "",
        f"Measured {figures['date']}, {args.count:,} numbers per process, WebDataset shards.",
        machine_line(figures),
        "",
        "| --model | numbers/s | ÷ the default's |",
        "| --- | ---: | ---: |",
        *(
            f"| {name} | {rate:,.0f} | {rate / rows['(default)']:.2f} |"
            for name, rate in rows.items()
        ),  # fmt: skip
        "",
    ]
    write_results(args.out, figures, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
