"""Time to quality: `numgen train` with its defaults against pytorch/examples' VAE, whole processes,
side by side on this machine.

    NUMGEN_DATA_DIR=../shared/data/mnist python bench/time_to_quality.py [--rounds 2] \\
        [--before-src OLD_CHECKOUT/src] [--threads 1]

Each round runs, in rotating order, three whole processes on full MNIST and timestamps every line
they print:
- reference: pytorch/examples vae/main.py's recipe, written out below (`--reference`): the
  784-400-20 MLP VAE, BCE + KL summed per batch, Adam 1e-3, batch 128, a shuffling DataLoader over
  a dataset built as torchvision's MNIST + ToTensor builds it (a PIL image per digit), a test pass
  and two PNGs per epoch, 10 epochs, seed 1;
- after: `numgen train RUN --arch mlp --latent-dim 20 --likelihood bernoulli`, as a user types it;
- before (with --before-src): the same command run from an older numgen checkout.
Time to quality is the wall time from a process's start to the end of its first epoch whose test
loss is at most the reference's 10-epoch test loss of the same round. Also recorded: per-epoch
time, steps/s, the fraction of the machine's measured GEMM rate, loss-vs-time curves (a PNG), and
Writes bench/results/time_to_quality.{md,json,png}. With --configs N (and --rounds 0 for them
alone): the seed conv and the cvae configs' epoch time before/after on N training digits, into
bench/results/train_configs.{md,json}.
"""

from __future__ import annotations

import argparse
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
CPU_TIME = (
    "Every process ran one thread, so its CPU time is the wall time it would take on an idle "
    "core, however busy the shared machine was."
)
NUMGEN_MLP = ["--arch", "mlp", "--latent-dim", "20", "--likelihood", "bernoulli"]
CONFIGS = {  # the other bundled configurations: the seed and the cvae's architecture
    "seed (conv, 2-D, MSE)": [],
    "cvae (MLP 2x512, 16-D, Bernoulli)": [
        "--model", "cvae", "--arch", "mlp", "--latent-dim", "16", "--likelihood", "bernoulli",
        "--hidden", "512", "--depth", "2",
    ],
}  # fmt: skip
# multiply-adds of the 784-400-20 VAE per image, forward: 784·400 + 400·40 + 20·400 + 400·784;
# a training step is ~3 forward passes (forward, and backward's two products per layer)
MLP_FLOP_PER_IMAGE = 3 * 2 * (784 * 400 + 400 * 40 + 20 * 400 + 400 * 784)


# --- the reference: pytorch/examples vae/main.py ------------------------------------------------


def reference(epochs: int, data_dir: str, out: Path) -> None:
    """pytorch/examples' vae/main.py on the CPU, statement for statement (its argument parsing,
    CUDA/MPS switches and torchvision helpers replaced by their CPU equivalents)."""
    from PIL import Image
    from torch import nn, optim
    from torch.nn import functional as F
    from torch.utils.data import DataLoader, Dataset

    from numgen.data import load_digits

    class MNIST(Dataset):  # torchvision.datasets.MNIST(transform=transforms.ToTensor())
        def __init__(self, train: bool) -> None:
            digits = load_digits("mnist", "train" if train else "test", data_dir)
            self.data, self.targets = torch.tensor(digits.images), torch.tensor(digits.labels)

        def __len__(self) -> int:
            return len(self.data)

        def __getitem__(self, index: int):
            img = Image.fromarray(self.data[index].numpy(), mode="L")
            pixels = torch.from_numpy(np.array(img, np.uint8, copy=True)).view(28, 28, 1)
            return pixels.permute((2, 0, 1)).contiguous().float().div(255), int(self.targets[index])

    def save_image(images: torch.Tensor, path: str, nrow: int = 8) -> None:  # torchvision's
        grid = images.view(-1, 28, 28).clamp(0, 1).mul(255).byte().numpy()
        rows = [np.hstack(list(grid[i : i + nrow])) for i in range(0, len(grid), nrow)]
        Image.fromarray(np.vstack(rows)).save(path)

    torch.manual_seed(1)
    train_loader = DataLoader(MNIST(train=True), batch_size=128, shuffle=True)
    test_loader = DataLoader(MNIST(train=False), batch_size=128, shuffle=False)

    class VAE(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(784, 400)
            self.fc21 = nn.Linear(400, 20)
            self.fc22 = nn.Linear(400, 20)
            self.fc3 = nn.Linear(20, 400)
            self.fc4 = nn.Linear(400, 784)

        def encode(self, x):
            h1 = F.relu(self.fc1(x))
            return self.fc21(h1), self.fc22(h1)

        def reparameterize(self, mu, logvar):
            std = torch.exp(0.5 * logvar)
            eps = torch.randn_like(std)
            return mu + eps * std

        def decode(self, z):
            h3 = F.relu(self.fc3(z))
            return torch.sigmoid(self.fc4(h3))

        def forward(self, x):
            mu, logvar = self.encode(x.view(-1, 784))
            z = self.reparameterize(mu, logvar)
            return self.decode(z), mu, logvar

    model = VAE()
    optimizer = optim.Adam(model.parameters(), lr=1e-3)

    def loss_function(recon_x, x, mu, logvar):
        bce = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
        kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
        return bce + kld

    def train(epoch):
        model.train()
        train_loss = 0
        for data, _ in train_loader:
            optimizer.zero_grad()
            recon_batch, mu, logvar = model(data)
            loss = loss_function(recon_batch, data, mu, logvar)
            loss.backward()
            train_loss += loss.item()
            optimizer.step()
        print(f"====> Epoch: {epoch} Average loss: {train_loss / len(train_loader.dataset):.4f}")

    def test(epoch):
        model.eval()
        test_loss = 0
        with torch.no_grad():
            for i, (data, _) in enumerate(test_loader):
                recon_batch, mu, logvar = model(data)
                test_loss += loss_function(recon_batch, data, mu, logvar).item()
                if i == 0:
                    n = min(data.size(0), 8)
                    comparison = torch.cat([data[:n], recon_batch.view(128, 1, 28, 28)[:n]])
                    save_image(comparison, str(out / f"reconstruction_{epoch}.png"), nrow=n)
        test_loss /= len(test_loader.dataset)
        print(f"====> Test set loss: {test_loss:.4f}", flush=True)

    for epoch in range(1, epochs + 1):
        train(epoch)
        test(epoch)
        with torch.no_grad():
            sample = model.decode(torch.randn(64, 20))
            save_image(sample.view(64, 1, 28, 28), str(out / f"sample_{epoch}.png"))


# --- running and timing whole processes ---------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a running process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(command: list[str], env: dict) -> tuple[dict, list[tuple[float, float, str]]]:
    """Wall and CPU seconds of a whole process, and its lines with (wall, CPU) seconds since
    its start. On a machine shared with other work a process waits for a core; its CPU time
    (one thread) is what its wall time would be on an idle machine."""
    start = time.perf_counter()
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
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


def epoch_cpu_s(curve: list[tuple[float, float, float]]) -> list[float]:
    """CPU seconds from one epoch's end to the next's (training, test pass and writes)."""
    return [b[1] - a[1] for a, b in zip(curve[:-1], curve[1:], strict=True)]


def run_reference(env: dict, workdir: Path) -> dict:
    out = Path(tempfile.mkdtemp(dir=workdir))
    command = [sys.executable, __file__, "--reference", "--out", str(out)]
    seconds, lines = timed(command, env)
    curve = [(w, c, float(line.split()[-1])) for w, c, line in lines if "Test set loss" in line]
    # curve: (wall s, CPU s since start, test loss) after each epoch
    return {"process_s": seconds, "curve": curve, "epoch_cpu_s": epoch_cpu_s(curve)}


EPOCH_LINE = re.compile(r"^epoch (\d+):")


def run_numgen(args: list[str], env: dict, workdir: Path) -> dict:
    run = Path(tempfile.mkdtemp(dir=workdir)) / "run"
    cli = [sys.executable, "-c", "from numgen.cli import run; run()"]  # older checkouts have it
    seconds, lines = timed([*cli, "train", str(run), *args], env)
    ends = [(w, c) for w, c, line in lines if EPOCH_LINE.match(line)]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    curve = [(w, c, r["test_loss"]) for (w, c), r in zip(ends, records, strict=True)]
    return {"process_s": seconds, "curve": curve, "epoch_cpu_s": epoch_cpu_s(curve)}


def time_to(curve: list[tuple[float, float, float]], target: float, clock: int) -> float | None:
    """Seconds (clock 0: wall, 1: CPU) from start to the first epoch at or below ``target``."""
    return next((point[clock] for point in curve if point[2] <= target), None)


def gemm_rate(dtype: torch.dtype, repeats: int = 50) -> float:
    """FLOP/s of this process's best (128 x 784) @ (784 x 400) product, the model's largest."""
    a, b = torch.randn(128, 784, dtype=dtype), torch.randn(784, 400, dtype=dtype)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * 128 * 784 * 400 * repeats / best


# --- the bench ----------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return float(np.median(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of all runs")
    parser.add_argument("--before-src", type=Path, help="src/ of an older numgen checkout")
    parser.add_argument("--after-src", type=Path, help="src/ of the numgen to time as 'after'")
    parser.add_argument("--threads", type=int, default=1, help="OMP threads of every process")
    parser.add_argument(
        "--configs", type=int, metavar="N", help="time the conv and cvae configs on N digits"
    )
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--tables", type=Path, help="only rewrite the tables from this JSON")
    parser.add_argument("--reference", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tables:  # (results of this machine: its precision when not recorded)
        results = json.loads(args.tables.read_text())
        results.setdefault("numgen_precision", resolve_precision("auto", torch.device("cpu")))
        return write_results(results)
    data_dir = os.environ.get("NUMGEN_DATA_DIR")
    if not data_dir:
        raise SystemExit("set NUMGEN_DATA_DIR to the MNIST folder, e.g. ../shared/data/mnist")
    if args.reference:
        return reference(10, data_dir, args.out)

    torch.set_num_threads(args.threads)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
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
                result = run_reference(env, args.workdir)
            else:
                result = run_numgen(NUMGEN_MLP, variants[name], args.workdir)
            runs[name].append(result)
            print(f"round {round_ + 1} {name}: {result['process_s']}, "
                  f"test loss {result['curve'][-1][2]:.2f}", flush=True)  # fmt: skip
    configs = {}
    for name, options in CONFIGS.items() if args.configs else ():
        configs[name] = {}
        for variant in [v for v in variants if v != "reference"]:
            limit = ["--epochs", "2", "--limit", str(args.configs)]
            r = run_numgen([*options, *limit], variants[variant], args.workdir)
            configs[name][variant] = {
                "epoch_cpu_s": r["epoch_cpu_s"][0],
                "test_loss": r["curve"][-1][2],
            }
            print(name, variant, configs[name][variant], flush=True)
    results = {
        "machine": f"{common.machine()}, {args.threads} thread(s) per timed process",
        "command": common.command(env="NUMGEN_DATA_DIR=..."),
        "load_average": [load_at_start, common.load_average()],
        "gemm_flop_per_s": {"fp32": gemm_rate(torch.float32), "bf16": gemm_rate(torch.bfloat16)},
        "numgen_precision": resolve_precision("auto", torch.device("cpu")),
        "runs": runs,
        "configs": configs,
    }
    if args.rounds:
        write_results(results)
    if args.configs:
        write_configs(results, args.configs)


def write_configs(results: dict, digits: int) -> None:
    """bench/results/train_configs.{json,md}: the other configs' epoch time, before/after."""
    lines = [
        "# Training time of the other bundled configs, before and after",
        "",
        common.machine_line(results),
        CPU_TIME,
        "",
        f"Epoch: CPU seconds from the end of epoch 1 to the end of epoch 2 of a run on {digits:,} "
        "training digits (training, the 10,000-digit test pass, the checkpoint). The test loss "
        "after 2 such short epochs only shows that the two train alike.",
        "",
        "| config | run | CPU s / epoch | after / before | test loss after 2 epochs |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for name, variants in results["configs"].items():
        for variant, r in variants.items():
            ratio = (
                r["epoch_cpu_s"] / variants["before"]["epoch_cpu_s"] if "before" in variants else 1
            )
            lines.append(
                f"| {name} | {variant} | {r['epoch_cpu_s']:.1f} | {ratio:.2f} | {r['test_loss']:.2f} |"
            )
    common.write_results("train_configs", results, "\n".join(lines))


def summarise(results: dict) -> list[dict]:
    """Per round: each variant's figures and its ratios to the round's reference."""
    rounds = []
    gemm = results["gemm_flop_per_s"]
    for i, ref in enumerate(results["runs"]["reference"]):
        target = ref["curve"][-1][2]
        row = {"round": i + 1, "target": target}
        for name, runs in results["runs"].items():
            r = runs[i]
            epoch_s = median(r["epoch_cpu_s"])
            precision = results["numgen_precision"] if name == "after" else "fp32"
            reached = {
                clock: time_to(r["curve"], target, k) for k, clock in enumerate(("wall", "cpu"))
            }
            row[name] = {
                "process_s": r["process_s"],
                "final_test_loss": r["curve"][-1][2],
                "time_to_target_s": reached,
                "ratio_to_reference": {
                    clock: t / ref["process_s"][clock] if t else None
                    for clock, t in reached.items()
                },
                "epoch_cpu_s": epoch_s,
                "steps_per_s": 469 / epoch_s,
                "precision": precision,
                "gemm_fraction": 60_000 * MLP_FLOP_PER_IMAGE / epoch_s / gemm[precision],
            }
        rounds.append(row)
    return rounds


def write_results(results: dict) -> None:
    results["rounds"] = summarise(results)
    gemm = results["gemm_flop_per_s"]
    lines = [
        "# Time to quality: `numgen train` against pytorch/examples' VAE",
        "",
        common.machine_line(results),
        CPU_TIME + " Ratios are given on both clocks.",
        f"Measured GEMM rate (128x784 @ 784x400, one thread): {gemm['fp32'] / 1e9:.1f} GFLOP/s "
        f"fp32, {gemm['bf16'] / 1e9:.1f} GFLOP/s bf16.",
        "",
        "Target: the reference's own 10-epoch test loss in the same round. Time to target: from "
        "process start to the end of the first epoch at or below it. Ratio: that time over the "
        "reference's whole process. Epoch: from one epoch's end to the next's (training, test "
        "pass, checkpoint or pictures), median over epochs 2-10.",
        "",
        "| round | run | whole process: CPU s (wall s) | final test loss "
        "| time to target: CPU s (wall s) | ratio: CPU (wall) | CPU s / epoch | steps/s "
        "| fraction of the GEMM rate (its precision) |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in results["rounds"]:
        for name in results["runs"]:
            r = row[name]
            t, ratio = r["time_to_target_s"], r["ratio_to_reference"]
            reached = f"{t['cpu']:.1f} ({t['wall']:.0f})" if t["cpu"] else "not reached"
            ratios = f"{ratio['cpu']:.2f} ({ratio['wall']:.2f})" if ratio["cpu"] else "—"
            lines.append(
                f"| {row['round']} | {name} | {r['process_s']['cpu']:.1f} "
                f"({r['process_s']['wall']:.0f}) | {r['final_test_loss']:.2f} | {reached} "
                f"| {ratios} | {r['epoch_cpu_s']:.2f} | {r['steps_per_s']:.0f} "
                f"| {r['gemm_fraction']:.2f} ({r['precision']}) |"
            )
    lines += ["", "![Test loss against CPU time](time_to_quality.png)"]
    common.write_results("time_to_quality", results, "\n".join(lines))
    plot_curves(results)


def plot_curves(results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours = {"reference": "tab:red", "after": "tab:blue", "before": "tab:gray"}
    for name, runs in results["runs"].items():
        for i, r in enumerate(runs):
            _, t, loss = zip(*r["curve"], strict=True)
            ax.plot(t, loss, "o-", ms=3, color=colours[name], label=name if i == 0 else None)
    target = results["rounds"][0]["target"]
    ax.axhline(target, color="k", lw=0.8, ls=":", label=f"reference at 10 epochs ({target:.1f})")
    ax.set(
        xlabel="CPU seconds since process start (one thread)",
        ylabel="test loss (nats)",
        ylim=(target - 3, 130),
    )
    ax.set_title("MLP VAE 784-400-20 on MNIST, whole processes")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "time_to_quality.png", dpi=100)


if __name__ == "__main__":
    main()
