"""Time to quality: `numgen train` with its defaults against pytorch/examples' VAE, whole processes,
one after the other on this machine.

    NUMGEN_DATA_DIR=../shared/data/mnist python bench/time_to_quality.py \\
        --reference-script EXAMPLES/vae/main.py [--threads 1|default] [--rounds 1] \\
        [--before-src OLD_CHECKOUT/src]

Each round runs, in rotating order, whole processes on full MNIST and timestamps every line they
print:
- reference: pytorch/examples' vae/main.py, unchanged, as a user runs it (`python main.py`: the
  784-400-20 MLP VAE, Adam 1e-3, batch 128, 10 epochs, seed 1, a test pass and two PNGs per
  epoch). torchvision is not installed here: its three imports are answered by bench/standin/
  (MNIST from the IDX files in $NUMGEN_DATA_DIR, a PIL image per digit as torchvision builds it,
  ToTensor, save_image), put first on the script's PYTHONPATH;
- after: `numgen train RUN --arch mlp --latent-dim 20 --likelihood bernoulli`, as a user types it;
- before (with --before-src): the same command run from an older numgen checkout.
Threads: `--threads 1` runs every process with one thread (OMP_NUM_THREADS=1) and reads CPU time,
what its wall time would be on an idle core however busy a shared machine is; `--threads default`
leaves every process its own default (PyTorch: a thread per core), as a user runs them, and reads
wall time: run it on an otherwise idle machine (`/work/bin/quietcpu`-style priority at least).
Time to quality is the time from a process's start to the end of its first epoch whose test loss
is at most the reference's 10-epoch test loss of the same round. Also recorded: per-epoch time,
steps/s, the fraction of the machine's measured GEMM rate (at the same threads) and loss-vs-time
curves. Writes bench/results/time_to_quality.{md,json,png} (one thread) or
time_to_quality_default_threads.{md,json,png}. The other bundled configs: bench/train_configs.py.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import common
from numgen.train import resolve_precision

RESULTS = common.RESULTS
STANDIN = Path(__file__).parent / "standin"  # the torchvision stand-in of the reference script
CLOCK_NOTE = {
    "cpu": "Every process ran one thread, so its CPU time is the wall time it would take on an "
    "idle core, however busy the shared machine was.",
    "wall": "Every process ran with its default thread count, as a user runs it; times are wall "
    "times of processes run one after the other at normal priority, with other work on the "
    "machine held at the lowest.",
}
NUMGEN_MLP = ["--arch", "mlp", "--latent-dim", "20", "--likelihood", "bernoulli"]
EPOCH_LINE = re.compile(r"^epoch (\d+):")


# --- running and timing whole processes ---------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a running process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(
    command: list[str], env: dict, cwd: Path | None = None
) -> tuple[dict, list[tuple[float, float, str]]]:
    """Wall and CPU seconds of a whole process, and its lines with (wall, CPU) seconds since
    its start. On a machine shared with other work a process waits for a core; its CPU time
    (one thread) is what its wall time would be on an idle machine."""
    start = time.perf_counter()
    process = subprocess.Popen(
        command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines = [
        (time.perf_counter() - start, cpu_seconds(process.pid), line.rstrip())
        for line in process.stdout
    ]
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{command} failed:\n" + "\n".join(line for *_, line in lines[-20:]))
    seconds = {"wall": time.perf_counter() - start, "cpu": usage.ru_utime + usage.ru_stime}
    return seconds, lines


def thread_env(threads: str) -> dict:
    """This process's environment with ``threads`` per process: a number, or "default" (no
    thread variable set, so each library picks its own)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    return env if threads == "default" else {**env, "OMP_NUM_THREADS": threads}


def epoch_seconds(curve: list[tuple[float, float, float]], clock: str) -> list[float]:
    """Seconds on ``clock`` from one epoch's end to the next's (training, test pass, writes)."""
    k = CLOCKS.index(clock)
    return [b[k] - a[k] for a, b in zip(curve[:-1], curve[1:], strict=True)]


CLOCKS = ("wall", "cpu")  # the order of a curve point's times: (wall s, CPU s, test loss)


def run_reference(script: Path, env: dict, workdir: Path) -> dict:
    """pytorch/examples' vae/main.py, unchanged, in a folder of its own (it writes results/)."""
    out = Path(tempfile.mkdtemp(dir=workdir))
    (out / "results").mkdir()
    paths = [str(STANDIN), *filter(None, [env.get("PYTHONPATH")])]
    env = {**env, "PYTHONPATH": os.pathsep.join(paths)}
    seconds, lines = timed([sys.executable, str(script.resolve())], env, cwd=out)
    curve = [(w, c, float(line.split()[-1])) for w, c, line in lines if "Test set loss" in line]
    return {"process_s": seconds, "curve": curve}


def run_numgen(args: list[str], env: dict, workdir: Path) -> dict:
    """`numgen train` with ``args`` in a fresh run folder: its whole-process seconds, its curve
    and its metrics records (``run``: the folder)."""
    run = Path(tempfile.mkdtemp(dir=workdir)) / "run"
    cli = [sys.executable, "-c", "from numgen.cli import run; run()"]  # older checkouts have it
    seconds, lines = timed([*cli, "train", str(run), *args], env)
    ends = [(w, c) for w, c, line in lines if EPOCH_LINE.match(line)]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    curve = [(w, c, r["test_loss"]) for (w, c), r in zip(ends, records, strict=True)]
    return {"process_s": seconds, "curve": curve, "records": records, "run": run}


def time_to(curve: list[tuple[float, float, float]], target: float, clock: str) -> float | None:
    """Seconds on ``clock`` from start to the first epoch at or below ``target``."""
    return next((point[CLOCKS.index(clock)] for point in curve if point[2] <= target), None)


def gemm_rate(dtype: torch.dtype, repeats: int = 50) -> float:
    """FLOP/s of this process's best (128 x 784) @ (784 x 400) product (the MLP VAE's largest)
    at its current thread count."""
    a, b = torch.randn(128, 784, dtype=dtype), torch.randn(784, 400, dtype=dtype)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * 128 * 784 * 400 * repeats / best


def train_flop_per_image(run: Path, batch: int = 128) -> float:
    """FLOPs of one training step, per image, of the model saved in ``run``: its loss and
    backward pass on a batch of random digits, counted by PyTorch's FlopCounterMode (matrix
    products and convolutions; elementwise work is not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    from numgen.hub import load

    model = load(run).train()
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 1, 28, 28, generator=generator)
    labels = torch.randint(0, 10, (batch,), generator=generator)
    with FlopCounterMode(display=False) as counter:
        model.loss(x, labels, generator=generator)["loss"].backward()
    return counter.get_total_flops() / batch


# --- the bench ----------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return float(np.median(values))


def results_name(threads: str) -> str:
    return "time_to_quality" if threads == "1" else f"time_to_quality_{threads}_threads"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds of all runs")
    parser.add_argument(
        "--reference-script", type=Path, help="pytorch/examples' vae/main.py, unchanged"
    )
    parser.add_argument("--before-src", type=Path, help="src/ of an older numgen checkout")
    parser.add_argument("--after-src", type=Path, help="src/ of the numgen to time as 'after'")
    parser.add_argument(
        "--threads", default="1", help="threads per process: a number, or 'default' (each "
        "process's own default, as a user runs it)",
    )  # fmt: skip
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--tables", type=Path, help="only rewrite the tables from this JSON")
    args = parser.parse_args()
    if args.tables:
        return write_results(json.loads(args.tables.read_text()))
    if not os.environ.get("NUMGEN_DATA_DIR"):
        raise SystemExit("set NUMGEN_DATA_DIR to the MNIST folder, e.g. ../shared/data/mnist")
    if not (args.threads == "default" or args.threads.isdigit() and int(args.threads) > 0):
        raise SystemExit(f"--threads {args.threads}: give a number of threads or 'default'")
    if args.reference_script is None or not args.reference_script.is_file():
        raise SystemExit(
            "--reference-script: give pytorch/examples' vae/main.py (unchanged; "
            "https://github.com/pytorch/examples/blob/main/vae/main.py)"
        )

    if args.threads != "default":
        torch.set_num_threads(int(args.threads))
    env = thread_env(args.threads)
    variants = {"reference": None, "after": env}
    if args.after_src:  # (default: the numgen this script imports)
        variants["after"] = {**env, "PYTHONPATH": str(args.after_src.resolve())}
    if args.before_src:
        variants["before"] = {**env, "PYTHONPATH": str(args.before_src.resolve())}
    load_at_start = common.load_average()
    runs: dict[str, list[dict]] = {name: [] for name in variants}
    for round_ in range(args.rounds):
        names = list(variants)
        names = names[round_ % len(names) :] + names[: round_ % len(names)]  # rotate the order
        for name in names:
            if name == "reference":
                result = run_reference(args.reference_script, env, args.workdir)
            else:
                result = run_numgen(NUMGEN_MLP, variants[name], args.workdir)
                result = {"process_s": result["process_s"], "curve": result["curve"]}
            runs[name].append(result)
            print(f"round {round_ + 1} {name}: {result['process_s']}, "
                  f"test loss {result['curve'][-1][2]:.2f}", flush=True)  # fmt: skip
    script = args.reference_script.read_bytes()
    write_results({
        "machine": f"{common.machine()}, {args.threads} thread(s) per timed process",
        "command": common.command(env="NUMGEN_DATA_DIR=..."),
        "threads": args.threads,
        "clock": "cpu" if args.threads == "1" else "wall",
        "reference_script": {"sha256": hashlib.sha256(script).hexdigest(), "bytes": len(script)},
        "load_average": [load_at_start, common.load_average()],
        "gemm_flop_per_s": {"fp32": gemm_rate(torch.float32), "bf16": gemm_rate(torch.bfloat16)},
        "numgen_precision": resolve_precision("auto", torch.device("cpu")),
        "train_flop_per_image": train_flop_per_image(run_numgen(
            [*NUMGEN_MLP, "--epochs", "1", "--limit", "128"], env, args.workdir)["run"]),
        "runs": runs,
    })  # fmt: skip


def summarise(results: dict) -> list[dict]:
    """Per round: each variant's figures and its ratios to the round's reference, on both
    clocks; epoch figures on the mode's clock."""
    rounds = []
    gemm, clock = results["gemm_flop_per_s"], results["clock"]
    for i, ref in enumerate(results["runs"]["reference"]):
        target = ref["curve"][-1][2]
        row = {"round": i + 1, "target": target}
        for name, runs in results["runs"].items():
            r = runs[i]
            epoch_s = median(epoch_seconds(r["curve"], clock))
            precision = "fp32" if name == "reference" else results["numgen_precision"]
            flop = 60_000 * results["train_flop_per_image"]
            reached = {c: time_to(r["curve"], target, c) for c in CLOCKS}
            row[name] = {
                "process_s": r["process_s"],
                "final_test_loss": r["curve"][-1][2],
                "time_to_target_s": reached,
                "ratio_to_reference": {
                    c: t / ref["process_s"][c] if t else None for c, t in reached.items()
                },
                "epoch_s": epoch_s,
                "steps_per_s": 469 / epoch_s,
                "precision": precision,
                "gemm_fraction": flop / epoch_s / gemm[precision],
            }
        rounds.append(row)
    return rounds


def write_results(results: dict) -> None:
    results["rounds"] = summarise(results)
    gemm, clock = results["gemm_flop_per_s"], results["clock"]
    first, second = (clock, "wall" if clock == "cpu" else "cpu")
    name = results_name(results["threads"])
    lines = [
        "# Time to quality: `numgen train` against pytorch/examples' VAE",
        "",
        common.machine_line(results),
        f"{CLOCK_NOTE[clock]} Ratios are given on both clocks, {first} first.",
        f"Reference: pytorch/examples' vae/main.py, unchanged (sha256 "
        f"{results['reference_script']['sha256'][:16]}…), its torchvision imports answered by "
        "bench/standin/ (the same IDX files, a PIL image per digit, as torchvision's MNIST).",
        f"Measured GEMM rate (128x784 @ 784x400, at the processes' threads): "
        f"{gemm['fp32'] / 1e9:.1f} GFLOP/s fp32, {gemm['bf16'] / 1e9:.1f} GFLOP/s bf16; a "
        f"training step holds {results['train_flop_per_image'] / 1e6:.2f} MFLOP per digit of "
        "matrix products (PyTorch's FlopCounterMode).",
        "",
        "Target: the reference's own 10-epoch test loss in the same round. Time to target: from "
        "process start to the end of the first epoch at or below it. Ratio: that time over the "
        "reference's whole process. Epoch: from one epoch's end to the next's (training, test "
        "pass, checkpoint or pictures), median over epochs 2-10.",
        "",
        f"| round | run | whole process: {first} s ({second} s) | final test loss "
        f"| time to target: {first} s ({second} s) | ratio: {first} ({second}) "
        f"| {first} s / epoch | steps/s | fraction of the GEMM rate (its precision) |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in results["rounds"]:
        for variant in results["runs"]:
            r = row[variant]
            t, ratio = r["time_to_target_s"], r["ratio_to_reference"]
            reached = f"{t[first]:.1f} ({t[second]:.1f})" if t[first] else "not reached"
            ratios = f"{ratio[first]:.2f} ({ratio[second]:.2f})" if ratio[first] else "—"
            lines.append(
                f"| {row['round']} | {variant} | {r['process_s'][first]:.1f} "
                f"({r['process_s'][second]:.1f}) | {r['final_test_loss']:.2f} | {reached} "
                f"| {ratios} | {r['epoch_s']:.2f} | {r['steps_per_s']:.0f} "
                f"| {r['gemm_fraction']:.2f} ({r['precision']}) |"
            )
    lines += ["", f"![Test loss against {first} time]({name}.png)"]
    common.write_results(name, results, "\n".join(lines))
    plot_curves(results, name)


def plot_curves(results: dict, name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clock = results["clock"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours = {"reference": "tab:red", "after": "tab:blue", "before": "tab:gray"}
    for variant, runs in results["runs"].items():
        for i, r in enumerate(runs):
            t = [point[CLOCKS.index(clock)] for point in r["curve"]]
            loss = [point[2] for point in r["curve"]]
            ax.plot(t, loss, "o-", ms=3, color=colours[variant], label=variant if i == 0 else None)
    target = results["rounds"][0]["target"]
    ax.axhline(target, color="k", lw=0.8, ls=":", label=f"reference at 10 epochs ({target:.1f})")
    threads = "one thread" if results["threads"] == "1" else f"{results['threads']} threads"
    ax.set(xlabel=f"{clock} seconds since process start ({threads})", ylabel="test loss (nats)",
           ylim=(target - 3, 130))  # fmt: skip
    ax.set_title("MLP VAE 784-400-20 on MNIST, whole processes")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / f"{name}.png", dpi=100)


if __name__ == "__main__":
    main()
