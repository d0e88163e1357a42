"""The flow's sampling trade-off: style temperature, ODE steps, guidance and solver against
legibility, realism and speed, measured as ``bench/sharp.py`` measures the defaults (1,000
drawings of each digit).

Writes ``bench/results/sharp_tradeoff.{json,md}``:

    NUMGEN_DATA_DIR=../shared/data/mnist .venv/bin/python bench/sharp_tradeoff.py --model flow \\
        --setting 1.0,2 --setting 1.0,3 --setting 1.0,4 --setting 0.9,2 --setting 1.0,3,1.5 \\
        --setting 1.0,2,-,heun --setting 1.06,3,-,ab2,none --setting 1.06,3,-,ab2,0.8

Each setting is ``TEMPERATURE,STEPS[,GUIDANCE[,SOLVER[,CHECK]]]`` (left out or "-": the model's
default; CHECK is the legibility check's threshold, or "none" to draw without it). A Heun step
costs two network evaluations, except one ending at t = 1. ``--offsets 0,1000`` measures every
setting with each offset added to the drawings' seeds, to show how much a figure moves with the
seed alone.
"""

from __future__ import annotations

import argparse
import itertools
import time

from common import RESULTS, command, load_average, machine, machine_line, write_results
from numgen.data import load_digits, to_tensor
from numgen.hub import load
from numgen.models.sampling import Sampling
from numgen.recognizer import Recognizer, extract_features
from sharp import drawings, gemm_rate, judged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="flow")
    parser.add_argument(
        "--setting", action="append", required=True,
        help="TEMPERATURE,STEPS[,GUIDANCE[,SOLVER[,CHECK]]]",
    )  # fmt: skip
    parser.add_argument("--offsets", default="0", help="seed offsets, e.g. 0,1000")
    parser.add_argument("--per-digit", type=int, default=1000)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default=str(RESULTS / "sharp_tradeoff"))
    args = parser.parse_args()
    load_at_start = load_average()
    model, recognizer = load(args.model), Recognizer.from_pretrained()
    test = load_digits("mnist", "test", args.data_dir)
    test_feats = extract_features(recognizer, to_tensor(test.images))
    defaults = {"guidance": model.sampling.guidance, "solver": model.sampling.solver,
                "check": model.sampling.check}  # fmt: skip
    rows = []
    for setting, offset in itertools.product(args.setting, map(int, args.offsets.split(","))):
        values = dict(zip(["temperature", "steps", "guidance", "solver", "check"],
                          setting.split(","), strict=False))  # fmt: skip
        given = {k: v for k, v in values.items() if v != "-"}
        guidance = float(given.get("guidance", defaults["guidance"]))
        solver = given.get("solver", defaults["solver"])
        check = given.get("check", defaults["check"])
        sampling = Sampling(
            temperature=float(values["temperature"]), steps=int(values["steps"]),
            guidance=guidance, solver=solver,
            check=None if check in (None, "none") else float(check),
        )  # fmt: skip
        started = time.perf_counter()
        images, labels = drawings(model, args.per_digit, offset, sampling)
        seconds = time.perf_counter() - started
        rows.append({"temperature": sampling.temperature, "steps": sampling.steps,
                     "guidance": guidance, "solver": solver, "check": sampling.check,
                     "seed_offset": offset,
                     **judged(recognizer, images, labels, test_feats),
                     "digits_per_s": len(images) / seconds})  # fmt: skip
        print(rows[-1])
    figures = {"model": args.model, "date": time.strftime("%Y-%m-%d"), "machine": machine(),
               "command": command(), "load_average": [load_at_start, load_average()],
               "gemm_gflops": gemm_rate() / 1e9, "rows": rows}  # fmt: skip
    lines = [
        f"# The `{args.model}` model's sampling trade-off",
        "",
        f"Measured {figures['date']}; fp32 GEMM {figures['gemm_gflops']:.0f} GFLOP/s in the same "
        "run.",
        machine_line(figures),
        "",
        f"{args.per_digit:,} drawings of each digit (`compose.digits`, seed = digit + seed "
        "offset) per setting; "
        "Fréchet distance, precision and recall (k = 3) in the recognizer's features against the "
        "10,000 MNIST test digits; digits/s times the drawing alone.",
        "",
        "| temperature | steps | solver | guidance | check | seed offset | recognised | Fréchet "
        "| precision | recall | digits/s |",
        "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *(
            f"| {r['temperature']} | {r['steps']} | {r['solver']} | {r['guidance']} | "
            f"{r['check'] or 'none'} | {r['seed_offset']} | {r['recognised']:.2%} | "
            f"{r['frechet']:.3f} | "
            f"{r['precision']:.3f} | {r['recall']:.3f} | {r['digits_per_s']:,.0f} |"
            for r in rows
        ),
        "",
    ]
    write_results(args.out, figures, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
