"""Drawing in bfloat16 (`--precision bf16`) against float32, the default, for each model: speed
and quality together, so the one is never bought with the other unseen.

    NUMGEN_DATA_DIR=../shared/data/mnist python bench/draw_precision.py \\
        [--model onestep --model flow] [--per-digit 1000] [--count 2000] [--rounds 2]

For each model and precision, in one process:
- digits/s of ``compose.digits`` at the model's defaults (legibility check included), batches of
  1,000, alternating the precisions ``--rounds`` times (the best of each counts);
- ``numgen dataset --length 6`` numbers/s: ``--count`` six-digit numbers into WebDataset shards
  by ``export_dataset`` (one process, as `numgen dataset` below its pool size), alternated too;
- quality of ``--per-digit`` drawings of each digit, raw (no check) and as drawn (checked): the
  bundled recognizer's share read as asked, and Fréchet distance, precision and recall in its
  features against MNIST's test digits (``bench/sharp.py``'s measures); the share of pixels
  that differ from the fp32 drawing by more than 1/255.

On a CPU without native bfloat16 (AVX-512 BF16 or AMX) the bf16 passes are emulated and slower:
the machine line says which this was. Writes bench/results/draw_precision.{md,json}.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from common import command, load_average, machine, machine_line, write_results
from numgen import export
from numgen.data import load_digits, to_tensor
from numgen.hub import load
from numgen.models.sampling import PRECISIONS
from numgen.recognizer import Recognizer, extract_features
from sharp import digits_per_s, drawings, judged

MODELS = ("onestep", "flow")


def numbers_per_s(name: str, precision: str, count: int, seed: int) -> float:
    """Six-digit numbers/s of an export into WebDataset shards (one process)."""
    config = export.ExportConfig(count=count, min_length=6, max_length=6, model=name,
                                 seed=seed, precision=precision)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        export.export_dataset(Path(tmp) / "out", config, workers=1)
        return count / (time.perf_counter() - started)


def measure(name: str, args, recognizer, test_feats) -> dict:
    model = load(name)
    samplings = {p: model.sampling_with(precision=p) for p in PRECISIONS}
    raw = {p: model.sampling_with(precision=p, check=False) for p in PRECISIONS}
    speed = {p: {"digits_per_s": [], "numbers_per_s": []} for p in PRECISIONS}
    for r in range(args.rounds):
        for p in PRECISIONS:
            speed[p]["digits_per_s"].append(digits_per_s(model, args.seconds, samplings[p]))
            speed[p]["numbers_per_s"].append(numbers_per_s(name, p, args.count, seed=r))
            print(name, p, {k: round(v[-1]) for k, v in speed[p].items()}, flush=True)
    figures = {}
    drawn = {}
    for p in PRECISIONS:
        images, labels = drawings(model, args.per_digit, sampling=samplings[p])
        raw_images, _ = drawings(model, args.per_digit, sampling=raw[p])
        drawn[p] = raw_images
        figures[p] = {
            "digits_per_s": max(speed[p]["digits_per_s"]),
            "numbers_per_s": max(speed[p]["numbers_per_s"]),
            "rounds": speed[p],
            "checked": judged(recognizer, images, labels, test_feats),
            "raw": judged(recognizer, raw_images, labels, test_feats),
        }
        print(name, p, {k: v for k, v in figures[p].items() if k != "rounds"}, flush=True)
    figures["bf16"]["pixels_off"] = float((np.abs(drawn["bf16"] - drawn["fp32"]) > 1 / 255).mean())
    return figures


def markdown(f: dict) -> str:
    rows = [
        "# Drawing in bfloat16 against float32 (`--precision`)", "",
        f"{machine_line(f)}", "",
        f"Quality: {f['per_digit']:,} drawings of each digit, raw (`--no-check`) and checked (the "
        "model's default), judged by the bundled recognizer: read as asked, Fréchet distance, "
        "precision and recall in its features against MNIST's test digits. Speed: the best of "
        f"{f['rounds']} alternated rounds; numbers/s: {f['count']:,} six-digit numbers into "
        "WebDataset shards, one process. Pixels off: the share of raw bf16 pixels more than 1/255 "
        "from the fp32 drawing of the same style and seed.", "",
        "| model | precision | digits/s (checked) | numbers/s | recognised raw / checked | "
        "Fréchet raw / checked | precision / recall (checked) | pixels off |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]  # fmt: skip
    for name, by_precision in f["models"].items():
        for p in PRECISIONS:
            m = by_precision[p]
            off = f"{m['pixels_off']:.1%}" if "pixels_off" in m else "–"
            rows.append(
                f"| {name} | {p} | {m['digits_per_s']:,.0f} | {m['numbers_per_s']:,.0f} | "
                f"{m['raw']['recognised']:.2%} / {m['checked']['recognised']:.2%} | "
                f"{m['raw']['frechet']:.3f} / {m['checked']['frechet']:.3f} | "
                f"{m['checked']['precision']:.3f} / {m['checked']['recall']:.3f} | {off} |"
            )
    return "\n".join(rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", action="append", choices=MODELS, help="default: both")
    parser.add_argument("--per-digit", type=int, default=1000)
    parser.add_argument("--count", type=int, default=2000, help="six-digit numbers per export")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=5.0, help="per digits/s measurement")
    parser.add_argument("--out", default="draw_precision")
    args = parser.parse_args()
    figures = {"machine": machine(), "command": command(env="NUMGEN_DATA_DIR=..."),
               "load_average": [load_average()], "per_digit": args.per_digit,
               "count": args.count, "rounds": args.rounds, "models": {}}  # fmt: skip
    recognizer = Recognizer.from_pretrained()
    test = load_digits("mnist", "test")
    test_feats = extract_features(recognizer, to_tensor(test.images))
    for name in args.model or MODELS:
        figures["models"][name] = measure(name, args, recognizer, test_feats)
    figures["load_average"].append(load_average())
    write_results(args.out, figures, markdown(figures))


if __name__ == "__main__":
    main()
