"""Digits that look real: the flow designs beside the cvae and real MNIST, on every target of
issue 8, at the defaults a user gets.

For each generator (real MNIST test digits as the reference row, the bundled cvae, each flow):

1. legibility: 1,000 drawings of each digit (``compose.digits``, seed = digit) recognised as
   asked by the bundled recognizer; 1,000 random 4-digit numbers written by ``compose.write``
   and read back exactly — beside real MNIST test digits composed into numbers the same way;
2. realism: Fréchet distance, precision and recall (k = 3) in the recognizer's features, the
   10,000 drawings against the 10,000 MNIST test digits, beside 10,000 random training digits
   (the real-data floor). These are one draw each, and one draw of 10,000 moves Fréchet by
   ±0.03 (``bench/metric_spread.py`` gives the mean and spread over several draws);
3. usefulness (``--tstr``): a fresh recognizer (numgen's recipe) trained on 60,000 drawings
   (6,000 per digit) only, tested on the real test set, beside the same recipe on 60,000 real;
4. speed: digits/s at the defaults (batches of 1,000), FLOPs per digit, the fraction of the
   machine's fp32 GEMM rate measured in the same run, `numgen write 2026` end to end, and one
   client's web write;
5. style: the same style shared by a number's digits — the cosine similarity of recognizer-
   feature residuals of two different digits in the same style vs in different styles.

Writes ``bench/results/sharp.{json,md}`` and ``sharp.png`` (real | cvae | each flow) and
``sharp_styles.png`` (8 numbers × 3 styles per generator):

    NUMGEN_DATA_DIR=../shared/data/mnist .venv/bin/python bench/sharp.py \\
        --model cvae --model flow --model noise=runs/flow-noise [--model flow-before=DIR] --tstr
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from common import RESULTS, command, load_average, machine, machine_line, write_results
from numgen import compose, generate, pictures
from numgen.data import Digits, load_digits, to_tensor, to_uint8
from numgen.evaluate_samples import random_subset, tstr_accuracy
from numgen.hub import load
from numgen.layout import TOUCHING, draw_layout, hands, lay_out, resize_about_centre
from numgen.metrics import frechet_distance, precision_recall
from numgen.models.sampling import Sampling
from numgen.recognizer import (
    Recognizer,
    RecognizerConfig,
    extract_features,
    predict,
    train_recognizer,
)

PER_DIGIT = 1000


def gemm_rate(size: int = 1024, repeats: int = 10, tries: int = 5) -> float:
    """The machine's fp32 matrix-product rate now, in FLOP/s: the best of ``tries`` timings (a
    shared machine only ever slows a timing down)."""
    a = torch.randn(size, size)
    a @ a
    best = float("inf")
    for _ in range(tries):
        started = time.perf_counter()
        for _ in range(repeats):
            a @ a
        best = min(best, time.perf_counter() - started)
    return repeats * 2 * size**3 / best


def drawings(
    model, per_digit: int, offset: int = 0, sampling: Sampling | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``per_digit`` drawings of each digit with ``sampling`` (default: the model's; seed =
    digit + ``offset``): images and labels."""
    images = [compose.digits(model, d, per_digit, d + offset, sampling) for d in range(10)]
    return np.concatenate(images), np.repeat(np.arange(10), per_digit)


def real_numbers(test: Digits, count: int, length: int) -> list[tuple[str, Image.Image]]:
    """Real MNIST test digits composed into numbers as ``compose.write`` composes drawn ones."""
    rng = np.random.default_rng(2026)
    by_digit = [test.images[test.labels == d] / np.float32(255) for d in range(10)]
    numbers = []
    for i in range(count):
        text = "".join(map(str, rng.integers(0, 10, length)))
        glyphs = np.stack([by_digit[int(c)][rng.integers(len(by_digit[int(c)]))] for c in text])
        layout = draw_layout(np.random.default_rng(i), text, hands(np.array([i])))
        canvas, _ = lay_out(resize_about_centre(glyphs, layout.scales), layout)
        numbers.append((text, compose.to_picture(canvas)))
    return numbers


def drawn_numbers(
    model, count: int, length: int, sampling: Sampling | None = None
) -> list[tuple[str, Image.Image]]:
    rng = np.random.default_rng(2026)
    texts = ["".join(map(str, rng.integers(0, 10, length))) for _ in range(count)]
    return [(t, compose.write(model, t, style_seed=i, seed=i, sampling=sampling))
            for i, t in enumerate(texts)]  # fmt: skip


def read_back(recognizer, numbers: list[tuple[str, Image.Image]]) -> float:
    """The share of numbers read back exactly."""
    return float(np.mean([pictures.read_number(recognizer, img) == t for t, img in numbers]))


def realism(recognizer, images: np.ndarray, test_feats: np.ndarray) -> dict:
    feats = extract_features(recognizer, torch.from_numpy(images).unsqueeze(1))
    precision, recall = precision_recall(test_feats, feats, k=3)
    return {"frechet": frechet_distance(feats, test_feats), "precision": precision,
            "recall": recall}  # fmt: skip


def recognised(recognizer, images: np.ndarray, labels: np.ndarray) -> float:
    """The share of ``images`` the recognizer reads as their ``labels``."""
    read, _ = predict(recognizer, torch.from_numpy(images).unsqueeze(1))
    return float((read == labels).mean())


def judged(recognizer, images: np.ndarray, labels: np.ndarray, test_feats: np.ndarray) -> dict:
    """The share of ``images`` recognised as their ``labels``, and their :func:`realism`."""
    return {"recognised": recognised(recognizer, images, labels),
            **realism(recognizer, images, test_feats)}  # fmt: skip


def second_judged(second: Recognizer | None, images: np.ndarray, labels: np.ndarray) -> dict:
    """The share of ``images`` the second judge recognises as their ``labels`` (if there is one)."""
    return {} if second is None else {"second_recognised": recognised(second, images, labels)}


def test_reconstructions(model, recognizer, test: Digits, test_feats: np.ndarray) -> dict:
    """The model asked to redraw the 10,000 test digits: each one's style read from the digit
    itself (``encode_style``), then drawn at the defaults. Legibility here is close to the
    family's ceiling with a perfect style sampler (these styles are real, and held out from
    training); realism is an upper bound (each drawing copies a test digit it is compared with)."""
    images = torch.from_numpy(test.images / np.float32(255)).unsqueeze(1)
    pairs = zip(images.split(1000), torch.from_numpy(test.labels).split(1000), strict=True)
    styles = torch.cat([model.encode_style(chunk, labels) for chunk, labels in pairs])
    drawn = generate.draw(model, styles.numpy(), test.labels,
                          generate.digit_seeds(0, len(test.labels)))  # fmt: skip
    return judged(recognizer, drawn, test.labels, test_feats)


def tstr(images: np.ndarray, labels: np.ndarray, test: Digits) -> float:
    """Train-on-synthetic, test-on-real: numgen's recognizer recipe trained on these digits."""
    return tstr_accuracy(Digits(to_uint8(images), labels.astype(np.int64), "drawn"), test)


def flops_per_digit(model, per_digit: int = 50) -> float:
    """FLOPs per digit as ``compose.digits`` draws them: the sampler, and the legibility check's
    reading and redrawing where the model has one."""
    with FlopCounterMode(display=False) as counter:
        for d in range(10):
            compose.digits(model, d, per_digit, seed=d)
    return counter.get_total_flops() / (10 * per_digit)


def digits_per_s(model, seconds: float = 5.0, sampling: Sampling | None = None) -> float:
    """Digits/s with ``sampling`` (default: the model's): ``compose.digits`` in batches of 1,000,
    the digits 0-9 in turn, for ``seconds`` after a warm-up batch."""
    compose.digits(model, 3, 1000, 0, sampling)
    started, done = time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        compose.digits(model, done // 1000 % 10, 1000, done, sampling)
        done += 1000
    return done / (time.perf_counter() - started)


def speed(model, path: str) -> dict:
    """Digits/s at the defaults in batches of 1,000; `numgen write 2026` end to end; a web write."""
    rate = digits_per_s(model)
    cli = Path(sys.executable).with_name("numgen")
    runs = []
    for _ in range(3):
        began = time.perf_counter()
        subprocess.run([str(cli), "write", "2026", "--model", path, "--out", "/tmp/sharp-2026.png"],
                       check=False, capture_output=True)  # fmt: skip
        runs.append(time.perf_counter() - began)
    return {"digits_per_s": rate, "write_2026_s": statistics.median(runs),
            "web_write_ms": web_write_ms(path)}  # fmt: skip


def web_write_ms(path: str) -> float | None:
    """Median time of one client's GET /api/write in-process (the app's own work + HTTP glue)."""
    try:
        from fastapi.testclient import TestClient

        from numgen.web import create_app
    except ImportError:
        return None
    with TestClient(create_app({"bench": path})) as client:
        times = []
        for i in range(30):
            began = time.perf_counter()
            client.get("/api/write", params={"text": "2026", "style_seed": i, "model": "bench"})
            times.append(time.perf_counter() - began)
    return 1000 * statistics.median(times[5:])


def style_sharing(model, recognizer, styles: int = 200) -> dict:
    """Cosine similarity of feature residuals of digit pairs (a, b) in the same vs other styles."""
    style_vectors = generate.draw_styles(model, styles, 99)
    feats = []
    for d in range(10):
        drawn = generate.draw(model, style_vectors, d, generate.digit_seeds(d, styles))
        f = extract_features(recognizer, torch.from_numpy(drawn).unsqueeze(1))
        feats.append(f - f.mean(axis=0))  # what is left once the digit's mean is taken out
    unit = [f / np.linalg.norm(f, axis=1, keepdims=True) for f in feats]
    same, other = [], []
    for a in range(10):
        for b in range(a + 1, 10):
            sims = unit[a] @ unit[b].T  # (styles, styles)
            same.append(np.diag(sims).mean())
            other.append((sims.sum() - np.trace(sims)) / (styles * (styles - 1)))
    return {"same_style": float(np.mean(same)), "other_style": float(np.mean(other))}


def picture_rows(model, test: Digits) -> np.ndarray:
    """Digits 0-9, two of each, as one row per source."""
    if model is None:
        return np.stack(
            [test.images[test.labels == d][i] / 255 for i in range(2) for d in range(10)]
        )
    return np.stack([compose.digits(model, d, 2, seed=5)[i] for i in range(2) for d in range(10)])


def save_pictures(models: dict, test: Digits, out: Path) -> None:
    rows = [np.concatenate(list(picture_rows(m, test)), axis=1) for m in [None, *models.values()]]
    Image.fromarray(to_uint8(np.concatenate(rows))).resize(
        (rows[0].shape[1] * 3, 28 * len(rows) * 3), Image.Resampling.NEAREST
    ).save(out.with_suffix(".png"))
    blocks = []
    for model in models.values():
        for style_seed in (1, 2, 3):
            numbers = [compose.to_pixels(np.asarray(compose.write(model, t, style_seed=style_seed,
                       seed=i), np.float32) / 255) for i, t in enumerate(
                       ["2026", "1789", "4053", "31415", "8642", "907", "5550", "1234"])]  # fmt: skip
            width = sum(n.shape[1] for n in numbers)
            blocks.append(np.concatenate(numbers, axis=1)[:, :width])
    width = max(b.shape[1] for b in blocks)
    sheet = np.concatenate([np.pad(b, ((0, 0), (0, width - b.shape[1]))) for b in blocks])
    Image.fromarray(sheet).resize((width * 2, sheet.shape[0] * 2)).save(
        out.parent / f"{out.name}_styles.png"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=None, help="NAME or NAME=DIR")
    parser.add_argument("--per-digit", type=int, default=PER_DIGIT)
    parser.add_argument("--numbers", type=int, default=1000)
    parser.add_argument("--tstr", action="store_true", help="also train-on-synthetic (slow)")
    parser.add_argument(
        "--unchecked",
        action="append",
        default=[],
        metavar="NAME",
        help="also a quality row for model NAME drawn without its legibility check",
    )
    parser.add_argument(
        "--second-judge",
        action="store_true",
        help="also recognised by a second recognizer, trained here (seed 7)",
    )
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default=str(RESULTS / "sharp"))
    args = parser.parse_args()
    started, load_at_start = time.perf_counter(), load_average()
    specs = [s.split("=", 1) if "=" in s else [s, s] for s in args.model or ["cvae", "flow"]]
    models = {name: load(path) for name, path in specs}
    paths = dict(specs)
    recognizer = Recognizer.from_pretrained()
    test = load_digits("mnist", "test", args.data_dir)
    train = load_digits("mnist", "train", args.data_dir)
    test_feats = extract_features(recognizer, to_tensor(test.images))
    real_images = random_subset(train, 10 * args.per_digit, 0).images / np.float32(255)
    rows = {"real MNIST": {
        "recognised": recognised(recognizer, test.images / np.float32(255), test.labels),
        "numbers_read_back": read_back(recognizer, real_numbers(test, args.numbers, 4)),
        **realism(recognizer, real_images, test_feats),
    }}  # fmt: skip
    second = None
    if args.second_judge:  # the judge's recipe with its own seed: seen by no check, no choice
        second, trained = train_recognizer(train, test, RecognizerConfig(seed=7))
        rows["real MNIST"]["second_recognised"] = trained["test_accuracy"]
    if args.tstr:
        six = np.concatenate([np.flatnonzero(train.labels == d)[:6000] for d in range(10)])
        rows["real MNIST"]["tstr"] = tstr(
            train.images[six] / np.float32(255), train.labels[six], test
        )
    gemm = gemm_rate()
    for name, model in models.items():
        images, labels = drawings(model, args.per_digit)
        if name in args.unchecked:  # first the model's raw draws, for the quality columns only
            unchecked = model.sampling_with(check=False)
            raw = drawings(model, args.per_digit, sampling=unchecked)
            numbers = drawn_numbers(model, args.numbers, 4, unchecked)
            rows[f"{name}, no check"] = {
                **judged(recognizer, *raw, test_feats),
                "numbers_read_back": read_back(recognizer, numbers),
                **second_judged(second, *raw),
            }
        row = {
            "kind": model.config.kind,
            "defaults": {k: v for k, v in model.config.to_dict().items()
                         if k in ("start", "steps", "solver", "guidance", "sigma", "channels")},
            "temperature": model.sampling.temperature,
            "check": model.sampling.check,
            **judged(recognizer, images, labels, test_feats),
            **second_judged(second, images, labels),
            "numbers_read_back": read_back(recognizer, drawn_numbers(model, args.numbers, 4)),
            "style": style_sharing(model, recognizer),
            "flops_per_digit": flops_per_digit(model),
            **speed(model, paths[name]),
        }  # fmt: skip
        row["gemm_fraction"] = row["flops_per_digit"] * row["digits_per_s"] / gemm
        if model.can_encode_style and model.config.kind == "flow":
            row["test_reconstructions"] = test_reconstructions(model, recognizer, test, test_feats)
        if args.tstr:
            big, big_labels = drawings(model, 6000)
            row["tstr"] = tstr(big, big_labels, test)
        rows[name] = row
        print(name, json.dumps(row))
    out = Path(args.out) if Path(args.out).parent != Path(".") else RESULTS / args.out
    save_pictures(models, test, out)
    figures = {
        "pictures": out.name,  # NAME.png and NAME_styles.png beside NAME.md
        "date": time.strftime("%Y-%m-%d"),
        "command": command(),
        "machine": machine(),
        "load_average": [load_at_start, load_average()],
        "gemm_gflops": gemm / 1e9,
        "seconds": time.perf_counter() - started,
        "rows": rows,
    }
    write_results(args.out, figures, markdown(figures))
    print(markdown(figures))


def markdown(figures: dict) -> str:
    def pct(v) -> str:
        return "–" if v is None else f"{v:.2%}"

    def num(v, fmt=".2f") -> str:
        return "–" if v is None else format(v, fmt)

    rows = figures["rows"]
    lines = [
        "# Digits that look real: flow designs beside the cvae and real MNIST",
        "",
        f"Measured {figures['date']}; fp32 GEMM {figures['gemm_gflops']:.0f} GFLOP/s in the same "
        f"run; {figures['seconds']:.0f} s in all.",
        machine_line(figures),
        "",
        "| source | recognised | by a second judge | 4-digit numbers read back | Fréchet "
        "| precision | recall | train-on-it, test on real |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {pct(r['recognised'])} | {pct(r.get('second_recognised'))} | "
            f"{pct(r['numbers_read_back'])} | {num(r['frechet'])} | {num(r['precision'], '.3f')} "
            f"| {num(r['recall'], '.3f')} | {pct(r.get('tstr'))} |"
        )
    lines += [
        "",
        "Real MNIST's row: the recognizer on the 10,000 test digits; test digits composed into "
        "numbers as `compose.write` composes drawn ones; 10,000 random training digits against "
        "the test digits (the real-data floor of Fréchet, precision and recall); the recipe "
        "trained on 60,000 real training digits.",
        "",
        "Numbers are read back by cutting each picture at its blank columns "
        "(`pictures.read_number`): since numgen's layout lets a share of neighbours touch as "
        f"people's do (issue 20: {TOUCHING:.0%} of pairs by default), a touching pair is one "
        "piece and the number is "
        "misread, for real digits laid out the same way as for drawn ones; compare the rows, not "
        "the figure with runs before the touching layout. (`bench/text_marks.py` reads numbers "
        "through their digit boxes.)",
        "",
    ]
    redrawn = {name: r["test_reconstructions"] for name, r in rows.items()
               if "test_reconstructions" in r}  # fmt: skip
    if redrawn:
        lines += [
            "Where a flow's limit lies: the same flow asked to *redraw the 10,000 test digits*, "
            "each digit's style read from the digit itself (`encode_style`), then drawn at the "
            "defaults. These styles are real and were never trained on, so the recognised share "
            "is close to what the flow reaches with a perfect style sampler; Fréchet and recall "
            "are an upper bound (each drawing copies a test digit it is compared with). "
            "`bench/style_limits.py` draws training digits' styles instead, which copies no test "
            "digit.",
            "",
            "| flow, redrawing the test digits | recognised | Fréchet | precision | recall |",
            "| --- | ---: | ---: | ---: | ---: |",
            *(
                f"| {name} | {pct(r['recognised'])} | {num(r['frechet'])} | "
                f"{num(r['precision'], '.3f')} | {num(r['recall'], '.3f')} |"
                for name, r in redrawn.items()
            ),  # fmt: skip
            "",
        ]
    lines += [
        "| generator | defaults | digits/s | MFLOP/digit | share of GEMM rate "
        "| `numgen write 2026` | web write (1 client) | style: same vs other |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in rows.items():
        if "digits_per_s" not in r:
            continue
        defaults = ", ".join(f"{k} {v}" for k, v in r["defaults"].items()) or "decoder"
        check = "" if r.get("check") is None else f", check {r['check']}"
        lines.append(
            f"| {name} | {defaults}, temperature {r['temperature']}{check} | "
            f"{r['digits_per_s']:,.0f} | "
            f"{r['flops_per_digit'] / 1e6:.1f} | {r['gemm_fraction']:.1%} | "
            f"{r['write_2026_s']:.2f} s | {num(r['web_write_ms'], '.0f')} ms | "
            f"{r['style']['same_style']:.3f} vs {r['style']['other_style']:.3f} |"
        )
    lines += [
        "",
        "## The designs",
        "",
        "- **cvae**: the bundled conditional VAE alone (MLP 2×512, 16-D latent), styles from "
        "N(0, 0.6² I): numgen's writer until now.",
        "- **flow** (design 1, kept as the bundled default): flow matching that refines the "
        "cvae's decode, DiffuseVAE-style: the style is the cvae's latent (from each class's "
        "Gaussian of posterior means), the flow starts at the decode plus noise (σ 0.3) and sees "
        "the decode as a second channel; style-from-image is the cvae's encoder. U-Net 16 "
        "channels wide, 90 epochs (`numgen train runs/flow --model flow --base cvae --epochs 90 "
        "--batch-size 512 --lr 2e-3 --steps 3 --channels 16`), 3 two-step Adams-Bashforth steps "
        "(3 network evaluations), styles at temperature 1.07, and the legibility check "
        "(`numgen.legibility`): a style in which the bundled *checker* (a second, smaller "
        "recognizer, not the judge) reads a digit as asked with probability under 0.8 is "
        "redrawn from its seed's stream, the whole number at once.",
        "- **flow, no check**: the same flow and settings drawing without the check (the "
        "model's raw draws).",
        "- **flow-50ep**: the flow bundled before, the same network trained 50 epochs, as its "
        "training run saved it: 2 Euler steps, temperature 1.0, no check (bundled, it drew at "
        "3 Euler steps: 98.92 % recognised, read back 93.4 %, Fréchet 0.50, recall 0.748 in "
        "the previous run of this bench).",
        "- **flow-before** (where a row has this name): an earlier flow, the same design 12 "
        "channels wide, 30 epochs, 2 Euler steps.",
        "- **noise** (design 2): a class-conditional rectified flow from N(0, I), the same U-Net "
        "with one input channel; the style is the start noise itself (784 numbers, shared by a "
        "number's digits), style-from-image inverts the ODE. 15 epochs (`numgen train "
        "runs/flow-noise --model flow --start noise --epochs 15 --batch-size 512 --lr 2e-3 "
        "--steps 8`), 8 Euler steps. Half design 1's epochs: the session's CPU time ran out; its "
        "loss was still falling, but at 8 steps it cannot start from a digit's shape as design 1 "
        "does, which is what few steps need.",
        "",
        "A second judge: where the table has that column, the judge's recipe trained in the "
        "same run with another seed (7), seen by neither the check nor any choice of settings, "
        "reads the same digits; its real-data figure is its accuracy on the test digits.",
        "",
        "Style: cosine similarity of recognizer-feature residuals (each digit's mean taken out) "
        "of two different digits drawn in the same style, against two in different styles; "
        "a shared style gives a clearly higher first figure.",
        "",
        f"![real | each generator: digits 0-9 twice]({figures.get('pictures', 'sharp')}.png)",
        "",
        f"![8 numbers in 3 styles, per generator]({figures.get('pictures', 'sharp')}_styles.png)",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
