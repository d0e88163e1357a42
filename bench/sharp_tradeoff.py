"""The flow's sampling trade-off: style temperature, ODE steps, guidance and solver against
legibility, realism and speed, measured as ``bench/sharp.py`` measures the defaults (1,000
drawings of each digit).

Writes ``bench/results/sharp_tradeoff.{json,md}``:

    NUMGEN_DATA_DIR=../shared/data/mnist .venv/bin/python bench/sharp_tradeoff.py --model flow \\
        --setting 1.0,2 --setting 1.0,3 --setting 1.0,4 --setting 0.9,2 --setting 1.0,3,1.5 \\
        --setting 1.0,2,-,heun

Each setting is ``TEMPERATURE,STEPS[,GUIDANCE[,SOLVER]]`` (guidance and solver: the model's
defaults when left out; "-" keeps the default guidance). A Heun step costs two network
evaluations, except one ending at t = 1.
"""

from __future__ import annotations

import argparse
import time

from common import RESULTS, command, load_average, machine, machine_line, write_results
from numgen.data import load_digits, to_tensor
from numgen.hub import load
from numgen.recognizer import Recognizer, extract_features
from sharp import drawings, gemm_rate, judged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="flow")
    parser.add_argument(
        "--setting", action="append", help="TEMPERATURE,STEPS[,GUIDANCE[,SOLVER]]", required=True
    )
    parser.add_argument("--per-digit", type=int, default=1000)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default=str(RESULTS / "sharp_tradeoff"))
    args = parser.parse_args()
    load_at_start = load_average()
    model, recognizer = load(args.model), Recognizer.from_pretrained()
    test = load_digits("mnist", "test", args.data_dir)
    test_feats = extract_features(recognizer, to_tensor(test.images))
    rows, default_guidance, default_solver = [], model.config.guidance, model.config.solver
    for setting in args.setting:
        values = setting.split(",")
        temperature, steps = float(values[0]), int(values[1])
        guidance = float(values[2]) if len(values) > 2 and values[2] != "-" else default_guidance
        solver = values[3] if len(values) > 3 else default_solver
        model.temperature = temperature
        model.set_sampling(steps=steps, guidance=guidance, solver=solver)
        started = time.perf_counter()
        images, labels = drawings(model, args.per_digit)
        seconds = time.perf_counter() - started
        rows.append({"temperature": temperature, "steps": steps, "guidance": guidance,
                     "solver": solver,
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
        f"{args.per_digit:,} drawings of each digit (`compose.digits`, seed = digit) per setting; "
        "Fréchet distance, precision and recall (k = 3) in the recognizer's features against the "
        "10,000 MNIST test digits; digits/s times the drawing alone.",
        "",
        "| temperature | steps | solver | guidance | recognised | Fréchet | precision | recall | "
        "digits/s |",
        "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        *(
            f"| {r['temperature']} | {r['steps']} | {r['solver']} | {r['guidance']} | "
            f"{r['recognised']:.2%} | "
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
