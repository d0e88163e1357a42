"""`numgen evaluate --images` on real digits and on numgen's own exports: issue 22's targets.

1. MNIST's 10,000 test digits written as an ImageFolder (images/*.png + metadata.csv with
   ``file_name``, ``label``) by a few lines of Pillow here, as another tool would: recognised
   share and Fréchet distance against their own floor, and the command's wall time (target:
   under 60 s on 2 cores, without --tstr);
2. ``numgen dataset`` exports of single digits (``--length 1``) from each bundled writer, as
   shipped: Fréchet should rank real < flow < cvae;
3. optionally (``--numbers``) 4-digit numbers from each writer, cut at their boxes.

    NUMGEN_DATA_DIR=../shared/data/mnist .venv/bin/python bench/evaluate_images.py \\
        [--count 10000] [--model flow --model cvae] [--numbers 1000]

Writes bench/results/evaluate_images.{json,md}.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from common import command, load_average, machine, machine_line, write_results
from numgen.data import load_digits

NUMGEN = str(Path(sys.executable).with_name("numgen"))


def write_real(out: Path, count: int) -> Path:
    """MNIST test digits as a plain ImageFolder with metadata.csv, as any script writes one."""
    test = load_digits("mnist", "test")
    (out / "images").mkdir(parents=True)
    with open(out / "metadata.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file_name", "label"])
        for i in range(count):
            Image.fromarray(test.images[i]).save(out / "images" / f"{i:05d}.png")
            writer.writerow([f"images/{i:05d}.png", int(test.labels[i])])
    return out


def run(args: list[str]) -> tuple[float, dict | None]:
    """Wall time of a numgen command, and its JSON output if it printed one."""
    started = time.perf_counter()
    done = subprocess.run([NUMGEN, *args], capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"numgen {' '.join(args)} failed:\n{done.stderr}")
    try:
        return seconds, json.loads(done.stdout)
    except ValueError:
        return seconds, None


def measure(name: str, folder: Path, tstr: int) -> dict:
    args = ["evaluate", "--images", str(folder), "--json"]
    seconds, figures = run(args + (["--tstr", str(tstr)] if tstr else []))
    figures["command_seconds"] = seconds
    print(name, json.dumps({k: v for k, v in figures.items() if not isinstance(v, dict)}))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000, help="digits per folder")
    parser.add_argument("--model", action="append", default=None, help="bundled writers")
    parser.add_argument("--numbers", type=int, default=0, help="4-digit numbers per writer")
    parser.add_argument("--tstr", type=int, default=0)
    args = parser.parse_args()
    load_at_start, rows = load_average(), {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rows["real MNIST test digits (ImageFolder, metadata.csv)"] = measure(
            "real", write_real(root / "real", args.count), args.tstr
        )
        for model in args.model or ["flow", "cvae"]:
            out = root / model
            export_s, _ = run(["dataset", "--count", str(args.count), "--length", "1", "--model",
                               model, "--format", "imagefolder", "--out", str(out)])  # fmt: skip
            row = measure(model, out, args.tstr)
            row["export_seconds"] = export_s
            rows[f"`numgen dataset --length 1 --model {model}`"] = row
            if args.numbers:
                out = root / f"{model}-numbers"
                run(["dataset", "--count", str(args.numbers), "--length", "4", "--model", model,
                     "--out", str(out)])  # fmt: skip
                rows[f"`numgen dataset --length 4 --model {model}` (webdataset)"] = measure(
                    f"{model} numbers", out, 0
                )
    figures = {
        "date": time.strftime("%Y-%m-%d"),
        "command": command(env="NUMGEN_DATA_DIR=..."),
        "machine": machine(),
        "load_average": [load_at_start, load_average()],
        "rows": rows,
    }
    write_results("evaluate_images", figures, markdown(figures))


def markdown(figures: dict) -> str:
    def pct(v: float | None) -> str:
        return "–" if v is None else f"{v:.2%}"

    lines = [
        "# `numgen evaluate --images`: real digits and numgen's exports",
        "",
        f"Measured {figures['date']}. " + machine_line(figures),
        "",
        "| folder | images | digits | path | recognised (2nd judge) | numbers read back (real) "
        "| Fréchet / floor | Fréchet, 2nd judge / floor | precision / recall (real) "
        "| train-on-it, test on real (real) | `numgen evaluate --images` s |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in figures["rows"].items():
        paths = ", ".join(f"{p} {n:,}" for p, n in r["paths"].items())
        read_back = (
            "–" if r["numbers_read_back"] is None
            else f"{pct(r['numbers_read_back'])} ({pct(r['real']['numbers_read_back'])})"
        )  # fmt: skip
        tstr = f"{pct(r['tstr'])} ({pct(r['tstr_real'])})" if "tstr" in r else "–"
        lines.append(
            f"| {name} | {r['images']:,} | {r['digits']:,} | {paths} | {pct(r['recognised'])} "
            f"({pct(r['recognised_second'])}) | {read_back} | {r['frechet']:.3f} / "
            f"{r['frechet_floor']:.3f} | {r['frechet_second']:.3f} / "
            f"{r['frechet_second_floor']:.3f} | {r['precision']:.3f} / {r['recall']:.3f} "
            f"({r['real']['precision']:.3f} / {r['real']['recall']:.3f}) | {tstr} "
            f"| {r['command_seconds']:.1f} |"
        )
    lines += [
        "",
        "Each folder's digits against MNIST's 10,000 test digits, in the bundled recognizer's "
        "features (Fréchet, precision, recall) and the second judge's (`judge2`, a residual "
        "network). The floor: real training digits passed through the same reading path as the "
        "folder's (directly for 28×28 single digits without boxes; laid out as numgen lays out "
        "a number and cut at the boxes for an export with boxes), as many as the folder's "
        "digits. The real folder holds the test digits themselves, so its Fréchet distance is "
        "~0: the check is that the reading path leaves them as they are. The seconds are the "
        "whole command (start-up, reading the PNGs, both judges on the folder, the floor and "
        "the test digits), on a machine shared with other work.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
