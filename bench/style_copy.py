"""Style from a picture: how close does a model's redraw of a real digit come to the digit?

    NUMGEN_DATA_DIR=../shared/data/mnist python bench/style_copy.py --model flow --model onestep

For each model, 1,000 MNIST *test* digits (a fixed random choice) have their style read
(``encode_style``, as ``numgen write --style-image`` and the web page's upload do) and are drawn
again as the same digit from it (digit seeds 0-999, no legibility check: the copy itself).
Reported: the copy error, the mean sum of squared pixel differences to the digit copied and the
mean distance in the recognizer's features; and the share read as the digit. A model that pulls
its styles towards kept ones (onestep with anchors) is drawn a second time without the pull, which
tells what the pull costs a copied style.

Writes bench/results/style_copy.{md,json}.
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import torch

import common
from numgen.data import load_digits, to_tensor
from numgen.hub import load
from numgen.models import build_model
from numgen.recognizer import Recognizer

COPIES = 1000


def copy_figures(
    model, recognizer: Recognizer, images: torch.Tensor, labels: torch.Tensor, real: torch.Tensor
) -> dict:
    """Each digit's style read, the digit drawn again from it, and compared with it (``real``:
    the recognizer's features of ``images``)."""
    with torch.inference_mode():
        styles = model.encode_style(images.to(model.device), labels.to(model.device))
        drawn = model.draw(labels, styles, torch.arange(len(labels))).float().cpu()
        features = recognizer.features(drawn) - real
        read = recognizer(drawn).argmax(dim=1)
    return {
        "pixel_sse": float((drawn - images).pow(2).flatten(1).sum(1).mean()),
        "feature_distance": float(features.norm(dim=1).mean()),
        "read_as_digit": float((read == labels).float().mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, help="NAME or DIR")
    parser.add_argument("--out", default="style_copy")
    args = parser.parse_args()
    load_at_start = common.load_average()
    test = load_digits("mnist", "test", None)
    pick = np.sort(np.random.default_rng(0).choice(len(test), COPIES, replace=False))
    images, labels = to_tensor(test.images[pick]), torch.from_numpy(test.labels[pick]).long()
    recognizer = Recognizer.from_pretrained()
    with torch.inference_mode():
        real = recognizer.features(images)
    rows = {}
    for name in args.model:
        model = load(name)
        rows[name] = copy_figures(model, recognizer, images, labels, real)
        if getattr(model.config, "anchor_pull", 0) > 0:  # the same weights, without the pull
            # (the floor and the loose pull judge and pull kept styles: neither without a pull)
            config = dataclasses.replace(
                model.config, anchor_pull=0.0, anchor_floor=0.0, loose_pull=0.0
            )
            unpulled = build_model(config)
            weights = model.state_dict()
            weights.pop("anchors.pulls", None)  # each kept style's own pull
            unpulled.load_state_dict(weights)
            rows[f"{name}, without its pull"] = copy_figures(
                unpulled.eval(), recognizer, images, labels, real
            )
    figures = {
        "machine": common.machine(),
        "command": common.command(env="NUMGEN_DATA_DIR=..."),
        "load_average": [load_at_start, common.load_average()],
        "copies": COPIES,
        "rows": rows,
    }
    lines = [
        "# Style from a picture: the copy error",
        "",
        common.machine_line(figures),
        "",
        f"{COPIES:,} MNIST test digits, each one's style read and the digit drawn again from it "
        "(no check). Copy error: mean sum of squared pixel differences (pixels in [0, 1]) and "
        "mean distance in the recognizer's features, to the digit copied.",
        "",
        "| model | pixel error | feature distance | read as the digit |",
        "| --- | ---: | ---: | ---: |",
        *(
            f"| {name} | {r['pixel_sse']:.2f} | {r['feature_distance']:.3f} | "
            f"{r['read_as_digit']:.1%} |"
            for name, r in rows.items()
        ),
    ]
    common.write_results(args.out, figures, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
