"""Drawing speed of every bundled generator at its defaults, this checkout against an older one,
as a share of the machine's matrix-product rate measured in the same run.

    python bench/draw_speed.py [--before-src OLD_CHECKOUT/src] [--rounds 3] [--seconds 6]

For each round, model and variant (after: this checkout; before: --before-src), in that order, one
fresh process measures `compose.digits` at the model's defaults (legibility check included) in
batches of 1,000 for --seconds after a warm-up batch — the figure `sharp.py` reports — and the
machine's fp32 GEMM rate just before. The figure kept is the median over rounds; interleaving the
variants round by round lets a shared machine's drift fall on both alike. FLOPs per digit are
counted once (PyTorch's FlopCounterMode), on this checkout. Writes
bench/results/draw_speed.{md,json} (or where --out says).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import common

MODELS = ("cvae", "flow", "onestep")


def measure(model_name: str, seconds: float) -> dict:
    """This process's digits/s for one bundled model, and the GEMM rate just before."""
    from numgen.hub import load
    from sharp import digits_per_s, gemm_rate

    model = load(model_name)
    gemm = gemm_rate()
    return {"digits_per_s": digits_per_s(model, seconds), "gemm": gemm}


def run_worker(model_name: str, seconds: float, src: Path | None) -> dict:
    """:func:`measure` in a fresh process, importing numgen from ``src`` where given."""
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(src.resolve()), str(Path(__file__).parent)])
    worker = [sys.executable, __file__, "--worker", model_name, "--seconds", str(seconds)]
    out = subprocess.run(worker, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before-src", type=Path, help="src/ of an older numgen checkout")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the median counts")
    parser.add_argument("--seconds", type=float, default=6.0, help="measuring time per process")
    parser.add_argument("--model", action="append", choices=MODELS, help="default: all")
    parser.add_argument("--out", default="draw_speed", help="results name or path")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(args.worker, args.seconds)))
        return
    from numgen.hub import load
    from sharp import flops_per_digit

    models = args.model or list(MODELS)
    variants = {"after": None} | ({"before": args.before_src} if args.before_src else {})
    load_at_start = common.load_average()
    runs: dict[str, dict[str, list[dict]]] = {m: {v: [] for v in variants} for m in models}
    for _ in range(args.rounds):
        for name in models:
            for variant, src in variants.items():
                result = run_worker(name, args.seconds, src)
                runs[name][variant].append(result)
                print(name, variant, f"{result['digits_per_s']:,.0f} digits/s", flush=True)
    figures = {
        "machine": common.machine(),
        "command": common.command(),
        "load_average": [load_at_start, common.load_average()],
        "flops_per_digit": {name: flops_per_digit(load(name)) for name in models},
        "runs": runs,
    }
    common.write_results(args.out, figures, markdown(figures))


def markdown(figures: dict) -> str:
    lines = [
        "# Drawing speed at the defaults, before and after",
        "",
        common.machine_line(figures),
        "",
        "digits/s: `compose.digits` at the model's defaults (legibility check included) in "
        "batches of 1,000, the median over rounds, each a fresh process; GEMM share: FLOPs per "
        "digit × digits/s over the fp32 1024² matrix-product rate measured in the same process.",
        "",
        "| model | variant | digits/s | MFLOP / digit | share of GEMM rate | after ÷ before |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for name, by_variant in figures["runs"].items():
        flop = figures["flops_per_digit"][name]
        rate = {v: statistics.median(r["digits_per_s"] for r in rs) for v, rs in by_variant.items()}
        for variant, results in by_variant.items():
            share = statistics.median(flop * r["digits_per_s"] / r["gemm"] for r in results)
            versus = (
                f"{rate['after'] / rate['before']:.2f}"
                if variant == "after" and "before" in rate
                else ""
            )
            lines.append(
                f"| {name} | {variant} | {rate[variant]:,.0f} | {flop / 1e6:.1f} "
                f"| {share:.1%} | {versus} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
