"""`numgen dataset --length 6` as a user runs it: six-digit numbers per second into WebDataset
shards (the default format) for each model, whole processes (start-up and the card included),
one after the other in the same run, so that the rates compare with each other (with
``--before-src``, also an older checkout's default command, alternated with this one's); and the
same rows from ``numgen.export.NumberStream`` through a 2-worker PyTorch DataLoader, as a training
loop would take them, a row a message and (``NumberStream.rows``) 64 rows a message, for each
model. All split the rows into two shards, one per worker.

    NUMGEN_DATA_DIR=../shared/data/mnist .venv/bin/python bench/dataset_speed.py \\
        --model flow --model onestep --model cvae --count 3000

Writes ``bench/results/dataset_speed.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import RESULTS, command, load_average, machine, machine_line, write_results


def stream_rows_per_s(count: int, model: str | None, in_messages: bool) -> float:
    """Rows/s of the export's NumberStream (the default model if None) with 2 workers: a
    row a message (``DataLoader(stream, batch_size=None, num_workers=2)``), or many
    (``stream.rows(2)``); start-up (the workers loading the model) included."""
    from torch.utils.data import DataLoader

    from numgen.export import ExportConfig, NumberStream

    named = {} if model is None else {"model": model}
    config = ExportConfig(count=count, min_length=6, max_length=6, shard_size=count // 2, **named)
    stream = NumberStream(config)
    began = time.perf_counter()
    loader = stream.rows(2) if in_messages else DataLoader(stream, batch_size=None, num_workers=2)
    rows = sum(1 for _ in loader)
    return rows / (time.perf_counter() - began)


def numbers_per_s(
    model: str | None, count: int, precision: str | None = None, src: Path | None = None
) -> float:
    """Numbers/s of one `numgen dataset --length 6` process (the default model if None, at
    ``--precision`` where given; numgen imported from ``src`` where given)."""
    cli = Path(sys.executable).with_name("numgen")
    with tempfile.TemporaryDirectory() as folder:
        options = [] if model is None else ["--model", model]
        options += [] if precision is None else ["--precision", precision]
        args = [str(cli), "dataset", "--length", "6", "--count", str(count), *options,
                "--shard-size", str(count // 2),
                "--out", str(Path(folder) / "data")]  # fmt: skip
        began = time.perf_counter()
        env = dict(os.environ) | ({"PYTHONPATH": str(src.resolve())} if src else {})
        subprocess.run(args, check=True, capture_output=True, env=env)
        return count / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=None)
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument(
        "--precision", action="append", choices=("bf16",), help="also each model at it"
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="alternated runs of each model's three ways, best"
    )
    parser.add_argument(
        "--before-src", type=Path, help="src/ of an older checkout: its default command too"
    )
    parser.add_argument("--out", default=str(RESULTS / "dataset_speed"))
    args = parser.parse_args()
    load_at_start = load_average()
    rows: dict[str, float] = {}
    for name in [None, *(args.model or [])]:
        label = name or "(default)"
        ways = {
            "command": label,
            **(
                {"before": f"{label}, before (--before-src)"}
                if args.before_src and not name
                else {}
            ),
            "a row a message": f"{label}, NumberStream into a 2-worker DataLoader, a row a message",
            "rows": f"{label}, NumberStream.rows(2): the same, 64 rows a message",
        }
        for _ in range(args.repeats):  # alternated, the best of each: the machine is shared
            for way, row in ways.items():
                rate = (
                    numbers_per_s(
                        name, args.count, src=args.before_src if way == "before" else None
                    )
                    if way in ("command", "before")
                    else stream_rows_per_s(args.count, name, in_messages=way == "rows")
                )
                rows[row] = max(rows.get(row, 0.0), rate)
    for precision in args.precision or []:
        for name in [None, *(args.model or [])]:
            label = f"{name or '(default)'} --precision {precision}"
            rows[label] = numbers_per_s(name, args.count, precision)
    figures = {"date": time.strftime("%Y-%m-%d"), "command": command(), "machine": machine(),
               "load_average": [load_at_start, load_average()], "count": args.count,
               "repeats": args.repeats, "rows": rows}  # fmt: skip
    lines = [
        "# `numgen dataset --length 6`: numbers per second, whole processes",
        "",
        f"Measured {figures['date']}, {args.count:,} numbers per process, WebDataset shards; "
        f"each model's command and streams alternated, best of {args.repeats}.",
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
