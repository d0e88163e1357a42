"""Read-back bench: does numgen's recognizer read what a conditional model was asked to write?

1. Digits: 1,000 drawings of each digit (seeded), read by the bundled recognizer; accuracy per
   digit, mean confidence, and the Fréchet distance to the MNIST test set in the recognizer's
   feature space (beside the distance between MNIST's own train and test digits, for scale).
2. Numbers: 1,000 random 4-digit numbers written by ``compose.write`` (style seed i, jitter seed
   i), cut into digits by column projection, each framed as MNIST and read; the exact-match rate,
   digit accuracy, and how often the cut gave the wrong number of digits.

Writes ``bench/results/compose_readback.json`` and ``.md``. Run it under the shared CPU lock:

    NUMGEN_DATA_DIR=/work/shared/data/mnist flock /tmp/numgen-cpu.lock \\
        .venv/bin/python bench/readback.py --model cvae
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch

from common import RESULTS, command, load_average, machine, machine_line, write_results
from numgen import compose, pictures
from numgen.data import load_digits, to_tensor
from numgen.hub import load
from numgen.metrics import frechet_distance
from numgen.recognizer import Recognizer, extract_features, predict


def digit_figures(model, recognizer, per_digit: int, temperature: float) -> tuple[dict, np.ndarray]:
    """Recognition of ``per_digit`` drawings of each digit; returns figures and the images."""
    images, rows = [], []
    for digit in range(10):
        sampling = dataclasses.replace(model.sampling, temperature=temperature)
        drawn = compose.digits(model, digit, per_digit, seed=digit, sampling=sampling)
        labels, probs = predict(recognizer, torch.from_numpy(drawn).unsqueeze(1))
        rows.append(
            {
                "digit": digit,
                "accuracy": float((labels == digit).mean()),
                "confidence": float(probs[:, digit].mean()),
                "read_as": np.bincount(labels, minlength=10).tolist(),
            }
        )
        images.append(drawn)
    total = sum(r["accuracy"] for r in rows) / 10
    return {"accuracy": total, "per_digit": rows}, np.concatenate(images)


def frechet_figures(recognizer, generated: np.ndarray, data_dir: str | None) -> dict:
    """Fréchet distances in recognizer features: generated vs MNIST test, and train vs test."""
    test = load_digits("mnist", "test", data_dir)
    train = load_digits("mnist", "train", data_dir).subset(len(test))
    features = {
        "test": extract_features(recognizer, to_tensor(test.images)),
        "train": extract_features(recognizer, to_tensor(train.images)),
        "generated": extract_features(recognizer, torch.from_numpy(generated).unsqueeze(1)),
    }
    return {
        "generated_vs_test": frechet_distance(features["generated"], features["test"]),
        "mnist_train_vs_test": frechet_distance(features["train"], features["test"]),
        "n": len(generated),
    }


def number_figures(model, recognizer, count: int, length: int) -> dict:
    """Write ``count`` random numbers, read them back, compare."""
    rng = np.random.default_rng(2026)
    texts = ["".join(map(str, rng.integers(0, 10, length))) for _ in range(count)]
    exact = digits_right = miscut = 0
    failures = []
    for i, text in enumerate(texts):
        read = pictures.read_number(recognizer, compose.write(model, text, style_seed=i, seed=i))
        exact += read == text
        if len(read) == len(text):
            digits_right += sum(a == b for a, b in zip(read, text, strict=True))
        else:
            miscut += 1
        if read != text and len(failures) < 20:
            failures.append({"index": i, "text": text, "read": read})
    return {
        "numbers": count,
        "length": length,
        "exact_match": exact / count,
        "digit_accuracy": digits_right / (count * length),
        "wrong_digit_count": miscut,
        "first_failures": failures,
    }


def markdown(figures: dict) -> str:
    d, f, n = figures["digits"], figures["frechet"], figures["numbers"]
    lines = [
        f"# Read-back of `{figures['model']}` (recognizer: bundled)",
        "",
        f"Measured {figures['date']}, {figures['seconds']:.0f} s; temperature "
        f"{figures['temperature']}. {machine_line(figures)}",
        "",
        f"## Digits: {d['per_digit_n']:,} per digit, recognised as asked: **{d['accuracy']:.2%}**",
        "",
        "| digit | recognised | mean confidence | read as 0-9 |",
        "|---|---|---|---|",
        *(
            f"| {r['digit']} | {r['accuracy']:.2%} | {r['confidence']:.3f} | "
            f"{' '.join(map(str, r['read_as']))} |"
            for r in d["per_digit"]
        ),
        "",
        f"Fréchet distance (recognizer features, {f['n']:,} generated vs the 10,000 MNIST test "
        f"digits): **{f['generated_vs_test']:.2f}**; MNIST's first 10,000 training digits vs the "
        f"test digits: {f['mnist_train_vs_test']:.2f}.",
        "",
        f"## Numbers: {n['numbers']:,} random {n['length']}-digit numbers",
        "",
        f"- exact match: **{n['exact_match']:.2%}**",
        f"- digit accuracy: **{n['digit_accuracy']:.2%}** (a number cut into the wrong number of "
        f"digits counts all its digits wrong)",
        f"- cut into the wrong number of digits: {n['wrong_digit_count']}",
        "",
        "Written by `compose.write(model, text, style_seed=i, seed=i)`, cut at blank columns "
        "(`pictures.segment`), each piece framed as MNIST and read (`pictures.read_number`).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cvae")
    parser.add_argument("--per-digit", type=int, default=1000)
    parser.add_argument("--numbers", type=int, default=1000)
    parser.add_argument(
        "--temperature", type=float, default=None, help="style temperature (default: the model's)"
    )
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default=str(RESULTS / "compose_readback"))
    args = parser.parse_args()
    torch.manual_seed(0)
    load_at_start = load_average()
    started = time.perf_counter()
    model, recognizer = load(args.model), Recognizer.from_pretrained()
    args.temperature = model.sampling.temperature if args.temperature is None else args.temperature
    digits, images = digit_figures(model, recognizer, args.per_digit, args.temperature)
    digits["per_digit_n"] = args.per_digit
    figures = {
        "model": args.model,
        "temperature": args.temperature,
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "command": command(),
        "digits": digits,
        "frechet": frechet_figures(recognizer, images, args.data_dir),
        "numbers": number_figures(model, recognizer, args.numbers, 4),
    }
    figures["seconds"] = time.perf_counter() - started
    figures["load_average"] = [load_at_start, load_average()]
    write_results(args.out, figures, markdown(figures))
    print(markdown(figures))


if __name__ == "__main__":
    main()
