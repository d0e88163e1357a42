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

# (column header, metrics group, key, format): the model's likelihood and latent space
COLUMNS = [
    ("recon MSE", "likelihood", "recon_mse", ".2f"),
    ("recon BCE (nats)", "likelihood", "recon_bce", ".1f"),
    ("−ELBO", "likelihood", "neg_elbo", ".2f"),
    ("IWAE NLL (nats)", "likelihood", "iwae_nll", ".2f"),
    ("k-NN acc.", "latent", "knn_accuracy", ".3f"),
    ("grid agreement", "latent", "grid_agreement", ".3f"),
]
# (column header, key, format) of a set of digits: as shipped, raw, real
SAMPLE_COLUMNS = [
    ("recognised", "recognised", ".2%"),
    ("recognised, 2nd judge", "recognised_second", ".2%"),
    ("Fréchet", "frechet", ".2f"),
    ("Fréchet, 2nd judge", "frechet_second", ".2f"),
    ("precision", "precision", ".3f"),
    ("recall", "recall", ".3f"),
    ("confidence", "confidence", ".3f"),
    ("class entropy", "class_entropy", ".3f"),
    ("styles redrawn per digit", "redraw_rate", ".4f"),
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


def drawn_as(drawn: dict) -> str:
    """The settings a row's digits were drawn with."""
    sampler = ", ".join(f"{k} {drawn[k]}" for k in ("steps", "solver", "guidance") if k in drawn)
    check = "no check" if drawn["check"] is None else f"check {drawn['check']}"
    return ", ".join(x for x in (f"temperature {drawn['temperature']}", sampler, check) if x)


def markdown(results: dict) -> str:
    s = results["settings"]
    lines = [
        "# Model quality",
        "",
        machine_line(results) + " Other work slows the evaluation seconds, not the figures.",
        f"Every bundled model evaluated by `numgen evaluate MODEL --raw` on {s['test_set']}, "
        f"seed {s['seed']}. IWAE NLL (Bernoulli models only) with K = {s['iwae_k']:,} on "
        f"{s['iwae_digits']:,} random test digits, stochastically binarized. A CVAE's IWAE NLL "
        "is of −log p(x | y) given the true label (its −log p(x) is at most 2.30 nats higher). "
        "— : not applicable to the model (each report says why). Definitions and pictures: "
        "each model's report.md.",
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
        model = m["model"]
        kind = model["kind"] + (
            f", {model['arch']}, {model['latent_dim']}-D, {model['likelihood']}"
            if "latent_dim" in model
            else (f", {model['start']} start" if "start" in model else "")
            + f", {model.get('channels', '?')} channels"
        )
        lines.append(
            f"| {name} | {kind} | {entry['training_time']} | {' | '.join(values)} "
            f"| {sum(m['seconds'].values()):.0f} |"
        )
    lines += [
        "",
        "## Digits as users get them, and the raw model's",
        "",
        f"{s['samples']:,} digits per row against the test digits, read by two judges: the "
        "bundled recognizer (a CNN, its features for Fréchet, precision, recall) and `judge2` "
        "(a residual network trained apart, used by no check and no choice of settings; its own "
        "features for its Fréchet distance). *As shipped*: drawn as `numgen digits` draws "
        "(the model's temperature, sampler and legibility check), a conditional model asked "
        "for the digits 0-9 in turn; *raw*: the same model with styles from the prior at "
        "temperature 1 and no check. The real row: random training digits (recognised: the "
        "test digits), the floor of Fréchet and the real-data precision and recall.",
        "",
        "| model | digits | drawn with | " + " | ".join(c[0] for c in SAMPLE_COLUMNS) + " |",
        "| --- | --- | --- |" + " ---: |" * len(SAMPLE_COLUMNS),
    ]
    for name, entry in results["models"].items():
        m = entry["metrics"]
        rows = {"as shipped": (m["samples"], drawn_as(m["settings"]["drawn"]))}
        if m.get("raw"):
            rows["raw"] = (m["raw"], "temperature 1, no check")
        for which, (figures, drawn) in rows.items():
            values = [cell(figures.get(key), spec) for _, key, spec in SAMPLE_COLUMNS]
            lines.append(f"| {name} | {which} | {drawn} | {' | '.join(values)} |")
    if results["models"]:
        real = next(iter(results["models"].values()))["metrics"]["real"]
        values = [cell(real.get(key), spec) for _, key, spec in SAMPLE_COLUMNS]
        lines.append(f"| real MNIST | | | {' | '.join(values)} |")
    lines += ["", "Models:"]
    lines += [
        f"- {name}: `{entry['metrics']['model']['source']}`"
        for name, entry in results["models"].items()
    ]
    return "\n".join(lines) + "\n"


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
    parser.add_argument("--tstr", type=int, default=0, help="train-on-synthetic digits per model")
    args = parser.parse_args()
    if not os.environ.get(DATA_DIR_ENV):
        raise SystemExit(f"set {DATA_DIR_ENV} to the MNIST folder, e.g. ../shared/data/mnist")

    config = EvalConfig(
        samples=args.samples, iwae_k=args.iwae_k, iwae_digits=args.iwae_digits, seed=args.seed,
        data_dir=os.environ[DATA_DIR_ENV], raw=True, tstr=args.tstr,
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
