"""How far one draw's realism figures move from draw to draw: Fréchet, precision and recall of
several independent draws of 10,000 digits per source, beside as many random sets of 10,000 real
training digits (the real-data floor).

``bench/sharp.py`` measures each source on ONE draw of 1,000 digits per class (seed = digit), and
its floor on ONE set of training digits. Those figures carry the draw's own luck: which styles
came up. Issue 19 asks for a Fréchet distance within 1.5× the floor, a gap of a few hundredths,
so this bench says how large that luck is, and what each source gives on average.

Draw ``k`` of a model is ``sharp.drawings(model, per_digit, offset=10 * k)`` at the model's
defaults (its legibility check included, as users get it; ``--unchecked NAME``: also without):
draw 0 is sharp.py's own. Real set ``k`` is 10,000 training digits chosen with seed ``k`` (set 0
is sharp.py's floor). Every draw is compared with the same 10,000 MNIST test digits through the
bundled recognizer's features, as sharp.py compares them.

    NUMGEN_DATA_DIR=../shared/data/mnist .venv/bin/python bench/metric_spread.py \\
        [--model onestep] [--model flow] [--unchecked onestep] [--draws 8]

Writes ``bench/results/metric_spread.{json,md}``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from common import RESULTS, command, load_average, machine, machine_line, write_results
from numgen.compose import DEFAULT_WRITER
from numgen.data import load_digits, to_tensor
from numgen.evaluate_samples import random_subset
from numgen.hub import load
from numgen.recognizer import Recognizer, extract_features
from sharp import PER_DIGIT, drawings, judged

MEASURES = ("frechet", "precision", "recall", "recognised")


def summary(draws: list[dict]) -> dict:
    """Mean, sample standard deviation, lowest and highest of each measure over ``draws``."""
    out = {}
    for measure in MEASURES:
        values = np.array([d[measure] for d in draws])
        out[measure] = {"mean": float(values.mean()), "sd": float(values.std(ddof=1)),
                        "min": float(values.min()), "max": float(values.max()),
                        "draws": values.tolist()}  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=None, help="NAME or directory")
    parser.add_argument("--unchecked", action="append", default=[], metavar="NAME")
    parser.add_argument("--draws", type=int, default=8, help="draws per source (at least 2)")
    parser.add_argument("--per-digit", type=int, default=PER_DIGIT)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default=str(RESULTS / "metric_spread"))
    args = parser.parse_args()
    if args.draws < 2:
        parser.error(f"--draws {args.draws}: a spread needs at least 2 draws")
    started, load_at_start = time.perf_counter(), load_average()
    recognizer = Recognizer.from_pretrained()
    test = load_digits("mnist", "test", args.data_dir)
    train = load_digits("mnist", "train", args.data_dir)
    test_feats = extract_features(recognizer, to_tensor(test.images))
    n = 10 * args.per_digit
    real = []
    for k in range(args.draws):  # set 0 is sharp.py's floor
        subset = random_subset(train, n, k)
        real.append(judged(recognizer, subset.images / np.float32(255), subset.labels, test_feats))
    sources = {"real MNIST (training digits)": summary(real)}
    for name in args.model or [DEFAULT_WRITER]:
        model = load(name)
        ways = {name: model.sampling}
        if name in args.unchecked:
            ways[f"{name}, no check"] = model.sampling_with(check=False)
        for label, sampling in ways.items():
            draws = []
            for k in range(args.draws):
                images, labels = drawings(model, args.per_digit, 10 * k, sampling)
                draws.append(judged(recognizer, images, labels, test_feats))
                print(label, k, draws[-1], flush=True)
            sources[label] = summary(draws)
    floor = sources["real MNIST (training digits)"]["frechet"]
    figures = {"date": time.strftime("%Y-%m-%d"), "command": command(), "machine": machine(),
               "load_average": [load_at_start, load_average()],
               "seconds": time.perf_counter() - started, "draws": args.draws,
               "per_digit": args.per_digit, "sources": sources}  # fmt: skip
    lines = [
        "# Realism figures, draw by draw: how much one draw of 10,000 digits moves them",
        "",
        f"Measured {figures['date']}; {figures['seconds']:.0f} s in all.",
        machine_line(figures),
        "",
        f"{args.draws} draws of {args.per_digit:,} digits per class for each source, each against "
        "the 10,000 MNIST test digits in the bundled recognizer's features (as `bench/sharp.py`; "
        "precision and recall with k = 3). A model's draw k has seeds digit + 10k at its defaults, "
        "its legibility check included unless the row says otherwise (draw 0 is sharp.py's); the "
        "real rows are random sets of training digits (set 0 is sharp.py's floor). Mean ± sample "
        "standard deviation, and the lowest and highest draw; Fréchet ÷ floor divides the "
        "source's mean by the real sets' mean.",
        "",
        "| source | Fréchet | lowest – highest | ÷ floor | precision | recall | recognised |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, s in sources.items():
        f = s["frechet"]
        lines.append(
            f"| {label} | {f['mean']:.3f} ± {f['sd']:.3f} | {f['min']:.3f} – {f['max']:.3f} | "
            f"{f['mean'] / floor['mean']:.2f} | {s['precision']['mean']:.3f} ± "
            f"{s['precision']['sd']:.3f} | {s['recall']['mean']:.3f} ± {s['recall']['sd']:.3f} | "
            f"{s['recognised']['mean']:.2%} ± {s['recognised']['sd']:.2%} |"
        )
    lines += [
        "",
        "Each draw's Fréchet distance, in draw order:",
        "",
        *(
            f"- {label}: " + ", ".join(f"{v:.3f}" for v in s["frechet"]["draws"])
            for label, s in sources.items()
        ),
        "",
    ]
    write_results(args.out, figures, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
