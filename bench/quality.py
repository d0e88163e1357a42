"""Quality of every bundled generator, and of any run directories given: `numgen evaluate` on each,
gathered into one table.

    NUMGEN_DATA_DIR=../shared/data/mnist python bench/quality.py [RUN_DIR ...] [--iwae-k K]

Writes bench/results/quality.md (one row per model, one column per metric, with training time
from the model's README.md (model card) or its run's metrics.jsonl) and quality.json (every model's full
metrics). Each model's own report, with pictures, goes to REPORTS/<name>/ (default evaluations/).
"""

from __future__ import annotations

import argparse
import os
import re
import time
from pathlib import Path

from common import command, load_average, machine, machine_line, write_results
from numgen import hub
from numgen.checkpoints import read_metrics
from numgen.data import DATA_DIR_ENV
from numgen.evaluate import EvalConfig, evaluate

# (column header, metrics group, key, format); "real" columns come from the real-data row
COLUMNS = [
    ("recon MSE", "likelihood", "recon_mse", ".2f"),
    ("recon BCE (nats)", "likelihood", "recon_bce", ".1f"),
    ("−ELBO", "likelihood", "neg_elbo", ".2f"),
    ("IWAE NLL (nats)", "likelihood", "iwae_nll", ".2f"),
    ("k-NN acc.", "latent", "knn_accuracy", ".3f"),
    ("grid agreement", "latent", "grid_agreement", ".3f"),
    ("Fréchet", "samples", "frechet", ".2f"),
    ("precision", "samples", "precision", ".3f"),
    ("recall", "samples", "recall", ".3f"),
    ("confidence", "samples", "confidence", ".3f"),
    ("class entropy", "samples", "class_entropy", ".3f"),
    ("class accuracy", "conditional", "class_accuracy", ".4f"),
]
TIME = re.compile(r"([\d,.]+)\s*(s|seconds|min|minutes|h|hours)\b")


def training_time(directory: Path) -> str:
    """How long the model trained: the epochs' seconds in its run's metrics.jsonl, else the first
    time given on a line of its README.md (model card) that mentions time, else "—"."""
    records = read_metrics(directory)
    if records:
        epochs = f"{len(records)} epoch{'s' if len(records) > 1 else ''}"
        return f"{sum(r['seconds'] for r in records):,.0f} s ({epochs}, run log)"
    card = directory / "README.md"
    if card.is_file():
        for line in card.read_text().splitlines():
            if "time" in line.lower() and (match := TIME.search(line)):
                return f"{match.group(0)} (model card)"
    return "—"


def cell(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value + 0.0, spec)  # + 0.0: no "-0.000"


def markdown(results: dict) -> str:
    s = results["settings"]
    lines = [
        "# Model quality",
        "",
        machine_line(results) + " Other work slows the evaluation seconds, not the figures.",
        f"Every model evaluated by `numgen evaluate` on {s['test_set']}, seed {s['seed']}: "
        f"{s['samples']:,} generated digits against the test digits in the bundled recognizer's "
        f"features; IWAE NLL (Bernoulli models only) with K = {s['iwae_k']:,} on "
        f"{s['iwae_digits']:,} random test digits, stochastically binarized. The last row puts "
        f"{s['samples']:,} real training digits in place of generated ones: the floor of the "
        "Fréchet distance and the real-data precision, recall, confidence and entropy. "
        "A CVAE's IWAE NLL is of −log p(x | y) given the true label (its −log p(x) is at most "
        "2.30 nats higher). — : not applicable to the model (each report says why). Definitions "
        "and pictures: each model's report.md.",
        "",
        "| model | kind | training time | " + " | ".join(c[0] for c in COLUMNS) + " | eval s |",
        "| --- | --- | --- |" + " ---: |" * (len(COLUMNS) + 1),
    ]
    for name, entry in results["models"].items():
        m = entry["metrics"]
        values = []
        for _, group, key, spec in COLUMNS:
            text = cell(m[group][key], spec)
            if key == "iwae_nll" and m[group][key] is not None:  # ± its standard error
                text += f" ± {m[group]['iwae_nll_stderr']:.2f}"
            values.append(text)
        kind = f"{m['model']['kind']}, {m['model']['arch']}, {m['model']['latent_dim']}-D, "
        kind += m["model"]["likelihood"]
        lines.append(
            f"| {name} | {kind} | {entry['training_time']} | {' | '.join(values)} "
            f"| {sum(m['seconds'].values()):.0f} |"
        )
    if results["models"]:
        real = next(iter(results["models"].values()))["metrics"]["real"]
        values = [
            cell(real[key], spec) if group == "samples" else "" for _, group, key, spec in COLUMNS
        ]
        lines.append(f"| real training digits | | | {' | '.join(values)} | |")
    lines += ["", "Models:"]
    lines += [
        f"- {name}: `{entry['metrics']['model']['source']}`"
        for name, entry in results["models"].items()
    ]
    return "\n".join(lines) + "\n"
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", type=Path, help="run or model directories to add")
    defaults = EvalConfig()
    parser.add_argument("--iwae-k", type=int, default=defaults.iwae_k)
    parser.add_argument("--iwae-digits", type=int, default=defaults.iwae_digits)
    parser.add_argument("--samples", type=int, default=defaults.samples)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--reports", type=Path, default=Path("evaluations"))
    args = parser.parse_args()
    if not os.environ.get(DATA_DIR_ENV):
        raise SystemExit(f"set {DATA_DIR_ENV} to the MNIST folder, e.g. ../shared/data/mnist")

    config = EvalConfig(
        samples=args.samples, iwae_k=args.iwae_k, iwae_digits=args.iwae_digits, seed=args.seed,
        data_dir=os.environ[DATA_DIR_ENV],
    )  # fmt: skip
    models: dict[str, str | Path] = {name: name for name in hub.generator_names()}
    models |= {run.resolve().name: run for run in args.runs}
    if not models:
        raise SystemExit("no bundled generator and no run directory given: nothing to evaluate")
    results = {
        "machine": machine(),
        "command": command(env="NUMGEN_DATA_DIR=..."),
        "settings": {},
        "models": {},
    }
    load_at_start = load_average()
    for name, model in models.items():
        started = time.perf_counter()
        metrics = evaluate(model, args.reports / name, config, args.device)
        print(f"{name}: evaluated in {time.perf_counter() - started:.0f} s", flush=True)
        results["settings"] = metrics["settings"]
        results["models"][name] = {
            "training_time": training_time(hub.resolve(model)),
            "metrics": metrics,
        }
    results["load_average"] = [load_at_start, load_average()]
    write_results("quality", results, markdown(results))


if __name__ == "__main__":
    main()
