"""Training and decoding speed on full MNIST, for the seed (conv) config and an MLP config.

    NUMGEN_DATA_DIR=../shared/data/mnist python bench/train_speed.py [--epochs 1]

Prints and records (bench/results/train_speed.{md,json}):
- seconds per epoch and training images/s for each config (one full epoch of 60,000 digits);
- decoding throughput (digits/s) of each decoder in every variant tried, so the "before" (a
  plain implementation: NCHW layout, copying ReLUs) stands beside the "after" (what
  ``numgen.load`` returns: channels-last layout, in-place ReLUs). All variants compute the same
  function; the script checks that their outputs agree.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from common import command, load_average, machine, machine_line, write_results
from numgen.checkpoints import read_metrics
from numgen.data import DATA_DIR_ENV
from numgen.hub import place
from numgen.models import VAEConfig, build_model
from numgen.train import TrainConfig, train

CONFIGS = {
    "seed (conv, 2-D, MSE)": VAEConfig(),
    "mlp (784-400-20, Bernoulli)": VAEConfig(arch="mlp", latent_dim=20, likelihood="bernoulli"),
}


def time_training(name: str, config: VAEConfig, epochs: int, workdir: Path) -> dict:
    run = workdir / name.split()[0]
    train(run, config, TrainConfig(epochs=epochs, data_dir=os.environ[DATA_DIR_ENV]), device="cpu")
    records = read_metrics(run)
    seconds = sum(r["seconds"] for r in records) / len(records)
    return {
        "seconds_per_epoch": seconds,
        "train_images_per_s": 60_000 / seconds,
        "final_test_loss": records[-1]["test_loss"],
    }


@torch.inference_mode()
def decode_rate(model, batch: int, total: int = 20_000, repeats: int = 3) -> float:
    """Best of ``repeats`` timings of decoding ``total`` prior latents in batches: digits/s."""
    z = torch.randn(total, model.config.latent_dim, generator=torch.Generator().manual_seed(0))
    model.decode(z[:batch])  # warm-up: first calls pick kernels
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(0, total, batch):
            model.decode(z[i : i + batch])
        best = min(best, time.perf_counter() - start)
    return total / best


def with_copying_relus(model):
    """The model with plain (out-of-place) ReLUs, as a straightforward implementation has."""
    for module in model.modules():
        if isinstance(module, torch.nn.ReLU):
            module.inplace = False
    return model


def decoding(config: VAEConfig) -> dict:
    """Digits/s of the plain implementation ("before": NCHW layout, copying ReLUs), of each step
    alone, and of what numgen ships ("after": ``numgen.load`` = channels-last, in-place ReLUs)."""
    torch.manual_seed(0)
    shipped = place(build_model(config), "cpu").eval()
    variants = {
        "before: NCHW, copying ReLU": with_copying_relus(build_model(config)),
        "NCHW, in-place ReLU": build_model(config),
        "channels-last, copying ReLU": with_copying_relus(place(build_model(config), "cpu")),
        "after: channels-last, in-place ReLU": shipped,
    }
    z = torch.randn(256, config.latent_dim)
    rates, difference = {}, 0.0
    with torch.inference_mode():
        reference = shipped.decode(z)
        for model in variants.values():
            model.load_state_dict(shipped.state_dict())
            model.eval()
            difference = max(difference, (model.decode(z) - reference).abs().max().item())
    for batch in (256, 1024):
        for name, model in variants.items():
            rates[f"{name}, batch {batch}"] = decode_rate(model, batch)
    return {"digits_per_s": rates, "max_abs_difference": difference}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1, help="epochs to time per config")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/numgen-bench-train"))
    args = parser.parse_args()
    if not os.environ.get(DATA_DIR_ENV):
        raise SystemExit(f"set {DATA_DIR_ENV} to the MNIST folder, e.g. ../shared/data/mnist")

    load_at_start = load_average()  # other work on the machine skews every figure: record it
    results = {
        "machine": machine(),
        "command": command(env="NUMGEN_DATA_DIR=..."),
        "training": {},
        "decoding": {},
    }
    for name, config in CONFIGS.items():
        results["decoding"][name] = decoding(config)
        print(
            name,
            "decoding:",
            {k: round(v) for k, v in results["decoding"][name]["digits_per_s"].items()},
            flush=True,
        )
        results["training"][name] = time_training(name, config, args.epochs, args.workdir)
        print(name, "training:", results["training"][name], flush=True)
    results["load_average"] = [load_at_start, load_average()]
    write_results("train_speed", results, markdown(results))


def markdown(results: dict) -> str:
    lines = [
        "# Training and decoding speed",
        "",
        machine_line(results),
        "",
        "| config | s / epoch (60,000 digits) | train images/s | test loss after |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, r in results["training"].items():
        lines.append(
            f"| {name} | {r['seconds_per_epoch']:.1f} | {r['train_images_per_s']:,.0f} | {r['final_test_loss']:.2f} |"
        )
    lines += ["", "| decoder | variant | digits/s |", "| --- | --- | ---: |"]
    for name, r in results["decoding"].items():
        for variant, rate in r["digits_per_s"].items():
            lines.append(f"| {name} | {variant} | {rate:,.0f} |")
        lines.append(
            f"| {name} | max \\|difference\\| between variants | {r['max_abs_difference']:.1e} |"
        )
    print("\n".join(lines))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
