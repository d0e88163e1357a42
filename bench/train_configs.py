"""Training speed of every family `numgen train` trains with the bundled configs, at 1 and 2
threads, before and after, with the fraction of the machine's GEMM rate each reaches.

    NUMGEN_DATA_DIR=../shared/data/mnist python bench/train_configs.py [--digits 6000] \\
        [--repeats 2] [--before-src OLD_CHECKOUT/src] [--only flow]

For each config, thread count (OMP_NUM_THREADS=1, 2) and variant (after: this checkout; before:
--before-src), in that order, one whole `numgen train` process of 2 epochs on the first N training
digits; the figure is epoch 2's training time (metrics.jsonl's ``seconds``: wall time of the
epoch's steps, the first epoch being a warm-up), the least over --repeats rounds (a shared
machine only ever adds time). Run it on an otherwise idle machine: two threads wait for each
other at every operation, so a busy core slows both. The GEMM fraction is the step's
matrix-product FLOPs (PyTorch's FlopCounterMode on the trained model) per second over the rate of
a 128x784 @ 784x400 product at the same thread count. Writes bench/results/train_configs.{md,json}
(or where --out says).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import torch

import common
from numgen.train import PRECISIONS, resolve_precision
from time_to_quality import NUMGEN_MLP, gemm_rate, run_numgen, thread_env, train_flop_per_image

# the bundled models' training commands (their model cards), at their batch sizes
CONFIGS = {
    "seed (conv VAE, 2-D, MSE)": [],
    "mlp (784-400-20 VAE, Bernoulli)": NUMGEN_MLP,
    "cvae (MLP 2x512, 16-D, Bernoulli)": [
        "--model", "cvae", "--arch", "mlp", "--latent-dim", "16", "--likelihood", "bernoulli",
        "--hidden", "512", "--depth", "2",
    ],
    "flow (U-Net 16 on the cvae, batch 512)": [
        "--model", "flow", "--base", "cvae", "--batch-size", "512", "--lr", "2e-3", "--steps", "3",
        "--channels", "16",
    ],
    "onestep (from the flow, critic 0.3)": [
        "--model", "onestep", "--base", "flow", "--lr", "2e-3", "--adversarial", "0.3",
        "--prior-layers", "0",
    ],
}  # fmt: skip
THREADS = ("1", "2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--digits", type=int, default=6000, help="training digits per epoch")
    parser.add_argument("--repeats", type=int, default=1, help="rounds; the least time counts")
    parser.add_argument("--before-src", type=Path, help="src/ of an older numgen checkout")
    parser.add_argument("--only", action="append", help="configs whose name starts so")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument(
        "--precision", default="auto", choices=PRECISIONS, help="numgen train's --precision"
    )
    parser.add_argument("--out", default="train_configs", help="results name or path")
    args = parser.parse_args()
    if not os.environ.get("NUMGEN_DATA_DIR"):
        raise SystemExit("set NUMGEN_DATA_DIR to the MNIST folder, e.g. ../shared/data/mnist")
    configs = {
        name: options
        for name, options in CONFIGS.items()
        if not args.only or any(name.startswith(prefix) for prefix in args.only)
    }
    default_precision = resolve_precision("auto", torch.device("cpu"))
    precision = resolve_precision(args.precision, torch.device("cpu"))
    gemm = {}
    for threads in THREADS:
        torch.set_num_threads(int(threads))
        gemm[threads] = gemm_rate(torch.float32 if precision == "fp32" else torch.bfloat16)
    load_at_start = common.load_average()
    results: dict[str, dict] = {}
    for _ in range(args.repeats):
        for name, options in configs.items():
            entry = results.setdefault(name, {"runs": {}})
            for threads in THREADS:
                for variant, src in (("after", None), ("before", args.before_src)):
                    if variant == "before" and src is None:
                        continue
                    env = thread_env(threads)
                    if src:
                        env["PYTHONPATH"] = str(src.resolve())
                    limit = ["--epochs", "2", "--limit", str(args.digits), "--precision", precision]
                    r = run_numgen([*options, *limit], env, args.workdir)
                    if "flop_per_image" not in entry:
                        entry["flop_per_image"] = train_flop_per_image(r["run"])
                    seconds = r["records"][-1]["seconds"]
                    best = entry["runs"].setdefault(f"{variant} {threads}", {"seconds": []})
                    best["seconds"].append(seconds)
                    best["test_loss"] = r["records"][-1]["test_loss"]
                    print(name, variant, threads, f"{seconds:.2f} s", flush=True)
    figures = {
        "machine": common.machine(),
        "command": common.command(env="NUMGEN_DATA_DIR=..."),
        "load_average": [load_at_start, common.load_average()],
        "precision": precision,
        "default_precision": default_precision,
        "digits": args.digits,
        "gemm_flop_per_s": gemm,
        "configs": results,
    }
    common.write_results(args.out, figures, markdown(figures))


def markdown(figures: dict) -> str:
    gemm, digits = figures["gemm_flop_per_s"], figures["digits"]
    lines = [
        "# Training speed of every bundled config: 1 and 2 threads, before and after",
        "",
        common.machine_line(figures),
        "",
        f"Epoch: wall seconds of epoch 2's training steps on the first {digits:,} training digits "
        f"(metrics.jsonl's `seconds`), the least over the rounds; `numgen train --precision "
        f"{figures['precision']}` (its default here: "
        f"{figures.get('default_precision', figures['precision'])}). GEMM rate (128x784 @ 784x400, "
        f"{figures['precision']}): "
        + ", ".join(f"{gemm[t] / 1e9:.1f} GFLOP/s at {t} thread(s)" for t in THREADS)
        + "; fraction: the step's matrix-product FLOPs per second over it, at the same threads.",
        "",
        "| config | run | MFLOP / digit | s / epoch, 1 thread | 2 threads | 2 ÷ 1 threads "
        "| GEMM fraction, 1 thread | 2 threads | after ÷ before, 2 threads: least (median) "
        "| test loss |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, entry in figures["configs"].items():
        runs, flop = entry["runs"], entry["flop_per_image"]
        for variant in ("after", "before"):
            if f"{variant} 1" not in runs:
                continue
            s = {t: min(runs[f"{variant} {t}"]["seconds"]) for t in THREADS}
            fraction = {t: digits * flop / s[t] / gemm[t] for t in THREADS}
            versus = "—"
            if "before 2" in runs:  # the least times, and the medians (robust to a lucky round)
                before, after = runs["before 2"]["seconds"], runs[f"{variant} 2"]["seconds"]
                median = statistics.median(after) / statistics.median(before)
                versus = f"{s['2'] / min(before):.2f} ({median:.2f})"
            lines.append(
                f"| {name} | {variant} | {flop / 1e6:.1f} | {s['1']:.2f} | {s['2']:.2f} "
                f"| {s['2'] / s['1']:.2f} | {fraction['1']:.2f} | {fraction['2']:.2f} "
                f"| {versus if variant == 'after' else ''} | {runs[f'{variant} 2']['test_loss']:.2f} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
