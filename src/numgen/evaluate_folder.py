"""How real are the digits in a folder? ``numgen evaluate --images DIR``, for a dataset made by
numgen or by any other tool (:mod:`numgen.folders` reads its layout).

Every image is turned into 28×28 digits by one *reading path*:

- an image whose row gives boxes is turned into ink (either polarity, contrast stretched) and
  cut at its boxes;
- a single digit of 28×28 pixels without boxes is measured directly (its ink, either polarity);
- a single digit of another size is turned into ink and framed whole;
- a number without boxes is turned into ink and cut at its runs of stroked columns
  (``pictures.segment``);

each cut is framed as MNIST frames its digits (``pictures.centre_like_mnist``).

The digits are read by both judges (:mod:`numgen.judging`) and compared with MNIST's test
digits. The real-data *floor* passes real training digits through the same path: for each
image, real digits of the same text laid out as numgen lays out a number (at the image's
height, cut at boxes where the image had them, segmented where not), or one real digit where
the image was measured directly. A number is *read back* when its digits, read in order, give
its text.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from numgen import compose, judging, pictures
from numgen.data import Digits, load_digits, to_uint8
from numgen.errors import ComposeError
from numgen.evaluate_samples import random_subset, tstr_accuracy
from numgen.folders import Sample, read_folder
from numgen.judging import Judges, Reading
from numgen.layout import draw_layout, hands, lay_out, resize_about_centre
from numgen.pictures import centre_like_mnist, open_image

Box = tuple[int, int, int, int]


def reading_path(size: tuple[int, int], text: str, boxes: tuple[Box, ...] | None) -> str:
    """How an image of ``size`` (width, height) labelled ``text`` is read: "boxes", "direct",
    "framed" or "segmented" (see the module docstring)."""
    if boxes is not None:
        return "boxes"
    if len(text) == 1:
        return "direct" if size == (28, 28) else "framed"
    return "segmented"


def cut(
    image: Image.Image, text: str, boxes: tuple[Box, ...] | None, path: str | None = None
) -> np.ndarray:
    """The digits of ``image`` by its reading ``path`` (by default :func:`reading_path`'s):
    ``(k, 28, 28)`` in [0, 1]."""
    path = path or reading_path(image.size, text, boxes)
    if path == "direct":
        grey = np.asarray(image.convert("L"), np.float32) / 255
        border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
        return (grey if np.median(border) < 0.5 else 1 - grey)[None]
    try:
        ink = pictures.image_to_ink(image)
    except ComposeError:  # a blank image: its digits are blank
        return np.zeros((len(text), 28, 28), np.float32)
    if path == "boxes":
        pieces = [ink[y0:y1, x0:x1] for x0, y0, x1, y1 in boxes]
    elif path == "framed":
        pieces = [ink]
    else:
        pieces = [ink[:, x0:x1] for x0, x1 in pictures.segment(ink)]
    cells = [_frame(piece) for piece in pieces]
    return np.stack(cells) if cells else np.zeros((0, 28, 28), np.float32)


def _frame(piece: np.ndarray) -> np.ndarray:
    """A piece of ink framed as MNIST; a blank piece (or an empty box) as a blank digit."""
    try:
        return centre_like_mnist(piece) if piece.size else np.zeros((28, 28), np.float32)
    except ComposeError:
        return np.zeros((28, 28), np.float32)


class RealDigits:
    """Real digits, each class's in a seeded random order, handed out without repeats until a
    class runs out (then its order starts again)."""

    def __init__(self, digits: Digits, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.by_class = [digits.images[digits.labels == d] for d in range(10)]
        self.order = [self.rng.permutation(len(c)) for c in self.by_class]
        self.next = [0] * 10

    def take(self, text: str) -> np.ndarray:
        """One real digit of each character of ``text``: uint8 ``(len(text), 28, 28)``."""
        out = []
        for char in text:
            d = int(char)
            out.append(self.by_class[d][self.order[d][self.next[d] % len(self.order[d])]])
            self.next[d] += 1
        return np.stack(out)


def real_counterpart(real: RealDigits, text: str, height: int, path: str) -> np.ndarray:
    """Real digits of ``text`` passed through the reading path ``path`` took for an image of
    ``height`` pixels: laid out as numgen lays out a number unless measured directly."""
    glyphs = real.take(text)
    if path == "direct":
        return cut(Image.fromarray(glyphs[0]), text, None, path)
    layout = draw_layout(real.rng, text, hands(real.rng.integers(2**62, size=1)))
    scaled = resize_about_centre(glyphs / np.float32(255), layout.scales)
    canvas, columns = lay_out(scaled, layout)
    pixels = compose.to_pixels(canvas, max(8, height))
    sx = pixels.shape[1] / canvas.shape[1]
    boxes = tuple(
        (int(x0 * sx), 0, min(math.ceil(x1 * sx), pixels.shape[1]), pixels.shape[0])
        for x0, x1 in columns
    )  # fmt: skip
    return cut(Image.fromarray(pixels), text, boxes if path == "boxes" else None, path)


@dataclass(frozen=True)
class Cuts:
    """Every image's digits, gathered: ``cells`` ``(D, 28, 28)``, ``asked`` ``(D,)`` (−1 for the
    digits of an image whose cut gave another count than its text), and per image its ``texts``
    and ``counts`` (of cells)."""

    cells: np.ndarray
    asked: np.ndarray
    texts: list[str]
    counts: list[int]

    @classmethod
    def of(cls, texts: list[str], cuts: list[np.ndarray]) -> Cuts:
        asked = []
        for text, cells in zip(texts, cuts, strict=True):
            asked += [int(ch) for ch in text] if len(cells) == len(text) else [-1] * len(cells)
        kept = [cells for cells in cuts if len(cells)]
        return cls(
            np.concatenate(kept) if kept else np.zeros((0, 28, 28), np.float32),
            np.array(asked, np.int64), texts, [len(cells) for cells in cuts],
        )  # fmt: skip

    def read_back(self, labels: np.ndarray) -> float | None:
        """The share of numbers (2 digits or more) whose digits read as ``labels`` give their
        text; None where there are none."""
        ends = np.cumsum(self.counts)
        read = [
            "".join(map(str, labels[end - n : end])) == text
            for text, n, end in zip(self.texts, self.counts, ends, strict=True)
            if len(text) > 1
        ]
        return float(np.mean(read)) if read else None


def figures(cuts: Cuts, reading: Reading, test: Reading, pr_k: int) -> dict:
    """The judges' figures of the digits of ``cuts`` and their numbers read back."""
    result = judging.judge(reading, cuts.asked, test, pr_k)
    # a digit whose image could not be cut into its text's count is not recognised
    return result | {
        "numbers_read_back": cuts.read_back(reading.labels),
        "numbers_read_back_second": cuts.read_back(reading.labels_second),
    }


def evaluate_folder(
    folder: str | Path, tstr: int = 0, seed: int = 0, pr_k: int = 3, dataset: str = "mnist",
    data_dir: str | None = None,
) -> dict:  # fmt: skip
    """Measure the digits of a dataset folder against MNIST's test digits (see the module
    docstring); with ``tstr`` > 0, numgen's recognizer recipe trained on up to ``tstr`` of its
    digits and tested on the real test set, beside the recipe on as many real training digits.
    Returns the figures (``recognised``, ``frechet``, ``frechet_floor``, ``precision``,
    ``recall``, ... and ``tstr``, ``tstr_real`` with ``tstr``)."""
    started = time.perf_counter()
    layout, samples = read_folder(folder)
    images = [_open(s) for s in samples]
    texts = [s.text for s in samples]
    paths = [reading_path(im.size, s.text, s.boxes) for im, s in zip(images, samples, strict=True)]
    cuts = Cuts.of(texts, [cut(im, s.text, s.boxes) for im, s in zip(images, samples, strict=True)])
    if len(cuts.cells) <= pr_k:
        raise ComposeError(f"{folder}: {len(cuts.cells)} digits found; at least {pr_k + 1} needed")
    test_digits = load_digits(dataset, "test", data_dir)
    train = load_digits(dataset, "train", data_dir)
    real = RealDigits(train, seed)
    real_cuts = Cuts.of(texts, [
        real_counterpart(real, s.text, im.height, c)
        for s, im, c in zip(samples, images, paths, strict=True)
    ])  # fmt: skip
    judges = Judges.bundled()
    test = judging.read_digits(judges, test_digits.images / np.float32(255))
    measured = figures(cuts, judging.read_digits(judges, cuts.cells), test, pr_k)
    floor = figures(real_cuts, judging.read_digits(judges, real_cuts.cells), test, pr_k)
    result = {
        "folder": str(folder), "layout": layout, "images": len(samples),
        "digits": len(cuts.cells), "paths": {p: paths.count(p) for p in sorted(set(paths))},
        **measured,
        "frechet_floor": floor["frechet"], "frechet_second_floor": floor["frechet_second"],
        "real": floor, "real_digits": len(real_cuts.cells), "test_set": test_digits.source,
    }  # fmt: skip
    if tstr:
        known = cuts.asked >= 0
        synthetic = random_subset(
            Digits(to_uint8(cuts.cells[known]), cuts.asked[known], "the folder's digits"),
            tstr, seed,
        )  # fmt: skip
        result["tstr"] = tstr_accuracy(synthetic, test_digits)
        result["tstr_real"] = tstr_accuracy(random_subset(train, len(synthetic), seed), test_digits)
        result["tstr_digits"] = len(synthetic)
    result["seconds"] = time.perf_counter() - started
    return result


def _open(sample: Sample) -> Image.Image:
    return open_image(sample.source, name=sample.name)
