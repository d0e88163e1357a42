"""Issue 20's reader ratios over several seeds of ``bench/ocr_transfer.py``: one table from the
results files of runs that differ only in ``--seed``.

A seed fixes the numbers every reader trains on, the test numbers and the readers' own
initialisation, and moves the exact-number ratios by one to two points: one run is one draw.
This script reads the runs' JSON results (nothing is trained again) and gives, for each reader
that all of them trained, its exact-number ratio to the real-trained reference per seed, and the
mean and standard deviation over the seeds.

    .venv/bin/python bench/ocr_seeds.py ocr_transfer_floor_seed0 ocr_transfer_floor_seed1 \\
        ocr_transfer_floor_seed2 --out ocr_transfer_floor_seeds

``--same RUN_DIR=NAME`` counts the model a run names by its run directory as the bundled model
NAME: the same weights, measured before and after they were bundled.

Writes ``bench/results/<out>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from common import RESULTS, command, write_results

REFERENCE = "real"  # the reader trained on real MNIST training digits, in the bench's layout
TEST_SETS = ("touching", "spaced")


def ratios(run: dict) -> dict[str, dict[str, float]]:
    """Each reader's exact-number share ÷ the reference reader's, per test set, in one run."""
    reference = run["readers"][REFERENCE]
    return {
        name: {t: reader[t]["exact"] / reference[t]["exact"] for t in TEST_SETS}
        for name, reader in run["readers"].items()
        if name != REFERENCE
    }


def rename_model(run: dict, old: str, new: str) -> None:
    """Call the model ``old`` ``new`` in one run's readers and read-back (in place)."""
    run["readers"] = {
        name.replace(f"numgen {old},", f"numgen {new},"): reader
        for name, reader in run["readers"].items()
    }
    if run.get("readback") and old in run["readback"]:
        run["readback"][new] = run["readback"].pop(old)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="results names in bench/results (without .json)")
    parser.add_argument("--out", default="ocr_transfer_seeds")
    parser.add_argument(
        "--same", action="append", default=[], metavar="RUN_DIR=NAME",
        help="a model named by its run directory in some runs: the bundled NAME, same weights",
    )  # fmt: skip
    args = parser.parse_args()
    if any("=" not in pair for pair in args.same):
        parser.error(f"--same takes RUN_DIR=NAME; got {args.same}")
    same = dict(pair.split("=", 1) for pair in args.same)
    if len(same) != len(args.same):
        parser.error(f"--same names a run directory twice; got {args.same}: give each once")
    missing = [name for name in args.runs if not (RESULTS / f"{name}.json").is_file()]
    if missing:
        parser.error(f"no results {missing[0]}.json in bench/results: give an ocr_transfer --out")
    runs = {name: json.loads((RESULTS / f"{name}.json").read_text()) for name in args.runs}
    for run in runs.values():
        for old, new in same.items():
            rename_model(run, old, new)
    seeds = {name: run["seed"] for name, run in runs.items()}
    if len(set(seeds.values())) != len(seeds):
        parser.error(f"the runs must differ in their seed; got {seeds}")
    per_run = {name: ratios(run) for name, run in runs.items()}
    readers = [r for r in next(iter(per_run.values())) if all(r in p for p in per_run.values())]
    table = {}
    for reader in readers:
        table[reader] = {}
        for t in TEST_SETS:
            values = np.array([per_run[name][reader][t] for name in runs])
            table[reader][t] = {"per_seed": values.tolist(), "mean": float(values.mean()),
                                "sd": float(values.std(ddof=1)) if len(values) > 1 else None}  # fmt: skip
    readback = {  # numgen's 4-digit numbers read back through their boxes, beside real digits
        model: {side: [runs[name]["readback"][model][side] for name in runs]
                for side in ("numgen", "real")}
        for model in runs[args.runs[0]].get("readback") or {}
        if all(model in (run.get("readback") or {}) for run in runs.values())
    }  # fmt: skip
    figures = {"command": command(), "runs": args.runs, "seeds": list(seeds.values()),
               "same": same, "ratios": table, "readback": readback}  # fmt: skip
    seed_list = ", ".join(str(s) for s in seeds.values())
    lines = [
        "# OCR transfer over seeds: the reader trained on numgen ÷ the one trained on real digits",
        "",
        f"Command: `{figures['command']}`. From the results of {len(runs)} runs of "
        f"`bench/ocr_transfer.py` with seeds {seed_list} ("
        + ", ".join(f"`{n}.md`" for n in runs)
        + "); nothing trained again. "
        + "".join(
            f"`{old}` is counted as `{new}` (the same weights, before they were bundled). "
            for old, new in same.items()
        )
        + "Exact-number share of each reader ÷ that of the reader "
        "trained on real MNIST training digits in the same run; issue 20's targets are ≥ 0.95 "
        "(touching) and ≥ 0.98 (spaced).",
        "",
        "| reader trained on | touching, per seed | mean ± sd | spaced, per seed | mean ± sd |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for reader, row in table.items():
        cells = []
        for t in TEST_SETS:
            r = row[t]
            sd = "" if r["sd"] is None else f" ± {r['sd']:.3f}"
            cells += [" / ".join(f"{v:.3f}" for v in r["per_seed"]), f"{r['mean']:.3f}{sd}"]
        lines.append(f"| {reader} | " + " | ".join(cells) + " |")
    if readback:
        lines += [
            "",
            "4-digit numbers read back by numgen's recognizer through their digit boxes, beside "
            "real training digits in numgen's layout cut the same way (issue 20: ≥ real):",
            "",
            "| model | numgen, per seed | mean | real digits, per seed | mean |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for model, sides in readback.items():
            cells = []
            for side in ("numgen", "real"):
                values = sides[side]
                cells += [" / ".join(f"{v:.1%}" for v in values), f"{np.mean(values):.1%}"]
            lines.append(f"| `{model}` | " + " | ".join(cells) + " |")
    lines.append("")
    write_results(RESULTS / args.out, figures, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
