"""Issue 19's routes to a one-step writer, side by side: distillation alone or with a critic, the
teacher's Gaussian styles or the learnt style prior, each drawn raw and with the legibility check,
beside the teacher (the bundled flow) drawn the same two ways.

For each row: 1,000 drawings of each digit (``compose.digits``, seed = digit, as bench/sharp.py)
recognised as asked by the bundled recognizer, and by the second judge (``judge2``, a residual
network of another architecture, which no check or training term reads); Fréchet distance,
precision and recall against the MNIST test digits in the recognizer's features (the real-data
floor: 10,000 random training digits); digits/s at batches of 1,000 as a ratio to the teacher's,
measured in the same run.

A "Gaussian styles" row (for a route with a learnt style prior) is the same trained model with
its prior replaced by the identity (the teacher's one Gaussian per class): what the prior adds.

    NUMGEN_DATA_DIR=../shared/data/mnist .venv/bin/python bench/onestep_routes.py \\
        --route distill=runs/os-a --route critic=runs/os-c --route bundled=onestep
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np

from common import RESULTS, command, load_average, machine, machine_line, write_results
from numgen.data import load_digits, to_tensor
from numgen.hub import load
from numgen.models.styles import StylePrior
from numgen.recognizer import SECOND_JUDGE, Recognizer, extract_features
from sharp import digits_per_s, drawings, gemm_rate, judged, realism, recognised


def rows_for(name: str, model, judges, test_feats, per_digit: int) -> dict:
    """The model drawn with its check (as shipped, where it has one) and raw."""
    recognizer, second = judges
    rows = {}
    for label, threshold in (("raw", None), ("with check", model.sampling.check or 0.8)):
        sampling = dataclasses.replace(model.sampling, check=threshold)
        images, labels = drawings(model, per_digit, sampling=sampling)
        rows[f"{name}, {label}"] = {**judged(recognizer, images, labels, test_feats),
                                    "second_recognised": recognised(second, images, labels),
                                    "digits_per_s": digits_per_s(model, 3.0, sampling)}  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--route", action="append", required=True, help="NAME=DIR of a onestep")
    parser.add_argument("--teacher", default="flow")
    parser.add_argument("--per-digit", type=int, default=1000)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default=str(RESULTS / "onestep_routes"))
    args = parser.parse_args()
    started, load_at_start = time.perf_counter(), load_average()
    recognizer = Recognizer.from_pretrained()
    judges = (recognizer, Recognizer.from_pretrained(SECOND_JUDGE))
    test = load_digits("mnist", "test", args.data_dir)
    train = load_digits("mnist", "train", args.data_dir)
    test_feats = extract_features(recognizer, to_tensor(test.images))
    pick = np.random.default_rng(0).choice(len(train), 10 * args.per_digit, replace=False)
    rows = {"real MNIST (training digits)": realism(
        recognizer, train.images[np.sort(pick)] / np.float32(255), test_feats)}  # fmt: skip
    gemm = gemm_rate()
    rows |= rows_for(f"teacher ({args.teacher})", load(args.teacher), judges, test_feats,
                     args.per_digit)  # fmt: skip
    configs = {}
    for spec in args.route:
        name, path = spec.split("=", 1)
        model = load(path)
        configs[name] = {k: v for k, v in model.config.to_dict().items() if k != "teacher"}
        rows |= rows_for(name, model, judges, test_feats, args.per_digit)
        if model.config.prior_layers:  # the same student drawing the teacher's Gaussian styles
            model.prior = StylePrior(model.style_dim, 0, 1, model.config.num_classes)
            rows |= rows_for(f"{name}, Gaussian styles", model, judges, test_feats,
                             args.per_digit)  # fmt: skip
    figures = {"date": time.strftime("%Y-%m-%d"), "command": command(), "machine": machine(),
               "load_average": [load_at_start, load_average()], "gemm_gflops": gemm / 1e9,
               "seconds": time.perf_counter() - started, "configs": configs, "rows": rows}  # fmt: skip
    write_results(args.out, figures, markdown(figures, args.teacher))
    print(json.dumps(rows, indent=1))


def markdown(figures: dict, teacher: str) -> str:
    rows = figures["rows"]
    base = rows[f"teacher ({teacher}), with check"]["digits_per_s"]
    lines = [
        "# One-step routes: distillation, a critic, a learnt style prior",
        "",
        f"Measured {figures['date']}; fp32 GEMM {figures['gemm_gflops']:.0f} GFLOP/s in the same "
        f"run; {figures['seconds']:.0f} s in all.",
        machine_line(figures),
        "",
        "| row | recognised | by judge2 | Fréchet | precision | recall "
        "| digits/s ÷ teacher with check |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in rows.items():
        recognised = f"{r['recognised']:.2%}" if "recognised" in r else "–"
        second = f"{r['second_recognised']:.2%}" if "second_recognised" in r else "–"
        speed = f"{r['digits_per_s'] / base:.2f}" if "digits_per_s" in r else "–"
        lines.append(f"| {name} | {recognised} | {second} | {r['frechet']:.3f} | "
                     f"{r['precision']:.3f} | {r['recall']:.3f} | {speed} |")  # fmt: skip
    lines += ["", "Configs (less the teacher's):", ""]
    lines += [f"- **{name}**: `{json.dumps(c)}`" for name, c in figures["configs"].items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
