"""Where a flow's remaining gaps lie: in its style sampler, or in the refiner that draws a style.

Issue 8 asks for digits that are legible (≥ 99.5 % recognised) and varied (recall ≥ 0.80) at
once. This bench draws 1,000 digits of each class two ways, at several step counts of the
model's solver, and measures them as ``bench/sharp.py`` does. It measures the raw model: the
legibility check (``numgen.legibility``) is off, as it would redraw only the sampled styles.

- **sampled styles**: the model's own style sampler (``compose.digits``);
- **training styles**: each digit in the style of a different random *training* digit of its
  class, read with ``encode_style``: what a perfect style sampler would give (it reproduces the
  training set's styles exactly), without copying the test digits that the metrics compare with.

If training styles are legible where sampled ones are not, the sampler is what costs legibility;
if even training styles fall short of a target, the refiner is the limit. A second table splits
the sampled styles' unrecognised share by the style's size (its norm, in fifths), which shows
where in the style space the illegible digits come from.

    NUMGEN_DATA_DIR=../shared/data/mnist .venv/bin/python bench/style_limits.py [--model flow]
        [--steps 3,4,8]   (the model's default step count is always measured)

Writes ``bench/results/style_limits.{json,md}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch

from common import RESULTS, command, load_average, machine, machine_line, write_results
from numgen import generate
from numgen.data import load_digits, to_tensor
from numgen.export.shards import model_parts, rebuild
from numgen.hub import load
from numgen.recognizer import Recognizer, extract_features, predict
from sharp import drawings, judged

FIFTHS = ("smallest fifth", "second", "third", "fourth", "largest fifth")


def training_styles(model, train, per_digit: int, seed: int = 0) -> np.ndarray:
    """The styles of ``per_digit`` random training digits of each class, in class order."""
    rng = np.random.default_rng(seed)
    styles = []
    for digit in range(10):
        chosen = rng.choice(np.flatnonzero(train.labels == digit), per_digit, replace=False)
        images = to_tensor(train.images[chosen]).to(model.device)
        labels = torch.full((per_digit,), digit, device=model.device)
        with torch.inference_mode():
            styles.append(model.encode_style(images, labels).float().cpu().numpy())
    return np.concatenate(styles)


def without_pull(model):
    """A copy of one-step ``model`` that draws each style where it is, not pulled towards its
    kept styles (the same weights; ``anchor_pull`` and ``anchor_floor`` 0)."""
    config, weights = model_parts(model)
    if config.get("kind") != "onestep":
        raise SystemExit(f"--no-pull: only a onestep model pulls its styles, not {config['kind']}")
    return rebuild({**config, "anchor_pull": 0.0, "anchor_floor": 0.0}, weights)


def errors_by_style_size(
    recognizer, model, images: np.ndarray, labels: np.ndarray, per_digit: int
) -> list[float]:
    """The unrecognised share of the sampled digits ``images`` (``compose.digits``, seed = digit)
    in each fifth of their style norms, smallest first."""
    styles = np.concatenate([generate.draw_styles(model, per_digit, seed=d) for d in range(10)])
    predicted, _ = predict(recognizer, torch.from_numpy(images).unsqueeze(1))
    wrong = predicted != labels
    fifths = np.array_split(np.argsort(np.linalg.norm(styles, axis=1)), 5)
    return [float(wrong[part].mean()) for part in fifths]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="flow")
    parser.add_argument("--steps", default="3,4,8", help="step counts, comma-separated")
    parser.add_argument("--per-digit", type=int, default=1000)
    parser.add_argument(
        "--no-pull",
        action="store_true",
        help="a onestep rebuilt without its pull towards kept styles (anchor_pull 0), so "
        "training styles are drawn as read: the student alone",
    )
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default=str(RESULTS / "style_limits"))
    args = parser.parse_args()
    load_at_start, started = load_average(), time.perf_counter()
    model, recognizer = load(args.model), Recognizer.from_pretrained()
    if args.no_pull:
        model = without_pull(model)
    if not model.can_encode_style:
        parser.error(f"{args.model} cannot read a style from a picture")
    raw = model.sampling_with(check=False)  # the raw model, both ways
    test = load_digits("mnist", "test", args.data_dir)
    train = load_digits("mnist", "train", args.data_dir)
    test_feats = extract_features(recognizer, to_tensor(test.images))
    labels = np.repeat(np.arange(10), args.per_digit)
    real_styles = training_styles(model, train, args.per_digit)
    seeds = np.concatenate([generate.digit_seeds(d, args.per_digit) for d in range(10)])
    rows, by_size = [], []
    one_step = model.config.kind == "onestep"  # no ODE: one network evaluation, whatever
    default_steps = 1 if one_step else raw.steps  # its sampler's steps say
    asked = () if one_step else (int(s) for s in args.steps.split(","))
    for steps in sorted({default_steps, *asked}):
        sampling = dataclasses.replace(raw, steps=steps)
        sampled, _ = drawings(model, args.per_digit, sampling=sampling)  # seed = digit
        if steps == default_steps:
            by_size = errors_by_style_size(recognizer, model, sampled, labels, args.per_digit)
        drawn = generate.draw(model, real_styles, labels, seeds, sampling)
        for source, images in (("sampled styles", sampled), ("training styles", drawn)):
            rows.append({"steps": steps, "styles": source,
                         **judged(recognizer, images, labels, test_feats)})  # fmt: skip
            print(rows[-1], flush=True)
    figures = {"model": args.model, "date": time.strftime("%Y-%m-%d"), "machine": machine(),
               "command": command(), "load_average": [load_at_start, load_average()],
               "seconds": time.perf_counter() - started, "default_steps": default_steps,
               "solver": raw.solver, "temperature": raw.temperature,
               "rows": rows, "unrecognised_by_style_size": by_size}  # fmt: skip
    lines = [
        f"# Where the `{args.model}` model's gaps lie: style sampler or refiner"
        + (" (rebuilt without its pull towards kept styles)" if args.no_pull else ""),
        "",
        f"Measured {figures['date']}; {figures['seconds']:.0f} s in all.",
        machine_line(figures),
        "",
        f"{args.per_digit:,} digits of each class per row, measured against the 10,000 MNIST test "
        "digits as in `bench/sharp.py` (recognizer features; precision and recall with k = 3). "
        "The raw model (no legibility check), "
        + ("one network evaluation" if one_step else f"{figures['solver']} solver")
        + f", styles at temperature "
        f"{figures['temperature']}. *Sampled styles*: the model's own sampler. *Training styles*: each "
        "digit in the style of a different random training digit of its class (`encode_style`), "
        "the best a style sampler could do short of copying the test set. Real test digits: "
        "99.60 % recognised; the real-data floor is Fréchet 0.25, precision 0.846, recall 0.868 "
        "(`bench/results/sharp.md`).",
        "",
        "| steps | styles | recognised | Fréchet | precision | recall |",
        "| ---: | --- | ---: | ---: | ---: | ---: |",
        *(
            f"| {r['steps']} | {r['styles']} | {r['recognised']:.2%} | {r['frechet']:.3f} | "
            f"{r['precision']:.3f} | {r['recall']:.3f} |"
            for r in rows
        ),
        "",
        f"Unrecognised share of the sampled digits at the default {default_steps} steps, by the "
        f"size (norm) of their style vector, in fifths of the {10 * args.per_digit:,} styles:",
        "",
        "| " + " | ".join(FIFTHS) + " |",
        "| " + " | ".join("---:" for _ in FIFTHS) + " |",
        "| " + " | ".join(f"{e:.2%}" for e in by_size) + " |",
        "",
    ]
    write_results(args.out, figures, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
