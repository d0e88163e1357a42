"""OCR transfer: does a reader trained on numgen's numbers read real handwritten numbers?

    NUMGEN_DATA_DIR=../shared/data/mnist python bench/ocr_transfer.py [--model flow] [--model cvae] \\
        [--train 40000] [--epochs 8] [--cache DIR]

The figure numgen's users care about most: a small CRNN-CTC reader (three conv blocks, a
bidirectional GRU, CTC; greedy decoding) is trained on ``--train`` numbers of 4-8 digits and asked
to read numbers composed from real MNIST *test* digits by :func:`real_number`, a layout written
here and independent of numgen's: digits cropped to their ink, a writer's size and baseline with
per-digit jitter, bottom-aligned, and neighbours that touch or overlap (the *touching* test set:
every pair's ink columns meet or overlap by up to 3 pixels) or stand apart (the *spaced* test
set: 1-6 blank columns).

Readers, each trained with the same recipe and seed:
- *real*, the reference: numbers of real MNIST *training* digits laid out by :func:`real_number`
  (half the numbers touching, half spaced);
- *real digits, numgen's layout* (one per ``--touching``): real MNIST *training* digits laid out
  by numgen's own layout (:func:`real_numbers_numgen_layout`), which tells what the layout costs
  a reader apart from what numgen's drawn digits cost;
- *numgen* (one per ``--model`` and ``--touching``, numgen's defaults when none is given): the
  rows of ``numgen dataset --length 4-8`` at its defaults otherwise, through
  :class:`numgen.export.NumberStream`.

Reports the exact-number and character accuracy (1 - edit distance / length) on each test set,
and numgen ÷ real. Writes bench/results/ocr_transfer.{md,json}; ``--cache`` keeps the drawn
training numbers between runs.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader

from common import command, load_average, machine, machine_line, write_results
from numgen.compose import DEFAULT_WRITER
from numgen.data import load_digits
from numgen.evaluate_folder import RealDigits, evaluate_folder
from numgen.export import ExportConfig, NumberStream, export_dataset
from numgen.layout import TOUCHING, draw_layout, hands, lay_out, resize_about_centre

LENGTHS = (4, 8)  # digits per number, both ends included
MAX_WIDTH = 256  # the widest number the reader takes: wider ones (rare) are squeezed to it
BLANK = 10  # CTC's blank label, after the ten digits
# columns of a number per reader frame: at 4, two narrow digits (two 1s, say) that overlap by 3
# pixels share one or two frames, too few for CTC to read a repeated label (it needs a blank
# between); at 2 the real reference reads 86.9 % of touching numbers, not 81.0 % (20,000 numbers,
# 6 epochs)
COLUMNS_PER_FRAME = 2
TOUCH, SPACED = "touching", "spaced"  # the two test sets
LAYOUT_ONLY = "real digits, numgen's layout"  # the reader that tells layout from drawing


# --- real numbers, laid out independently of numgen ---------------------------------------------


def ink_crop(digit: np.ndarray) -> np.ndarray:
    """A 28×28 uint8 digit cut to the rows and columns that hold ink."""
    rows, cols = np.flatnonzero(digit.any(axis=1)), np.flatnonzero(digit.any(axis=0))
    return digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def real_number(
    rng: np.random.Generator, images: np.ndarray, labels: np.ndarray, spacing: str
) -> tuple[np.ndarray, str]:
    """One number of 4-8 real digits, ``(28, W)`` uint8, and its text. ``spacing``: "touching"
    (every neighbouring pair's ink columns meet or overlap by up to 3 pixels), "spaced" (1-6
    blank columns), or "mixed" (one of the two, chosen per number)."""
    if spacing == "mixed":
        spacing = TOUCH if rng.random() < 0.5 else SPACED
    n = int(rng.integers(LENGTHS[0], LENGTHS[1] + 1))
    picks = rng.integers(len(labels), size=n)
    size = rng.uniform(0.8, 1.1)  # the writer's size, then each digit's own
    baseline, drift = rng.uniform(23, 26.5), rng.uniform(-0.4, 0.4)  # rows, rows per digit
    pieces = []
    for i, pick in enumerate(picks):
        ink = ink_crop(images[pick])
        scale = min(size * rng.uniform(0.92, 1.08), 26 / ink.shape[0])
        w, h = max(1, round(ink.shape[1] * scale)), max(1, round(ink.shape[0] * scale))
        glyph = np.asarray(Image.fromarray(ink).resize((w, h), Image.Resampling.BILINEAR))
        bottom = round(baseline + drift * (i - n / 2) + rng.uniform(-1, 1))
        top = int(np.clip(bottom - h, 0, 28 - h))
        gap = int(rng.integers(-3, 1) if spacing == TOUCH else rng.integers(1, 7))
        pieces.append((glyph, top, gap))
    left, right = rng.integers(2, 7, size=2)
    width = int(left + right + sum(g.shape[1] for g, _, _ in pieces))
    width += sum(gap for _, _, gap in pieces[1:])
    canvas = np.zeros((28, width), np.uint8)
    x = int(left)
    for i, (glyph, top, gap) in enumerate(pieces):
        x += gap if i else 0
        region = canvas[top : top + glyph.shape[0], x : x + glyph.shape[1]]
        np.maximum(region, glyph, out=region)  # overlapping strokes: the darker ink wins
        x += glyph.shape[1]
    return canvas, "".join(str(d) for d in labels[picks])


def real_numbers(
    split: str, count: int, spacing: str, seed: int
) -> tuple[list[np.ndarray], list[str]]:
    """``count`` numbers of MNIST ``split`` digits laid out by :func:`real_number`."""
    digits = load_digits("mnist", split)
    rng = np.random.default_rng(seed)
    pairs = [real_number(rng, digits.images, digits.labels, spacing) for _ in range(count)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def real_numbers_numgen_layout(
    count: int, touching: float, seed: int
) -> tuple[list[np.ndarray], list[str], float]:
    """``count`` numbers of 4-8 real MNIST *training* digits laid out by numgen's own layout (a
    hand per number, :func:`numgen.layout.lay_out`, as ``numgen write`` lays out its digits):
    a reader trained on these, beside the *real* reference and numgen's own numbers, tells what
    numgen's layout costs apart from what its drawn digits cost."""
    real = RealDigits(load_digits("mnist", "train"), seed)
    rng = np.random.default_rng(seed)
    images, texts = [], []
    for _ in range(count):
        n = int(rng.integers(LENGTHS[0], LENGTHS[1] + 1))
        text = "".join(str(d) for d in rng.integers(10, size=n))
        layout = draw_layout(rng, text, hands(rng.integers(2**62, size=1), touching))
        canvas, _ = lay_out(
            resize_about_centre(real.take(text) / np.float32(255), layout.scales), layout
        )
        images.append((canvas * 255).round().astype(np.uint8))
        texts.append(text)
    return images, texts, 0.0


# --- numgen's numbers ----------------------------------------------------------------------------


def numgen_numbers(
    model: str, touching: float, count: int, seed: int, cache: Path | None
) -> tuple[list[np.ndarray], list[str], float]:
    """The rows of ``numgen dataset --count COUNT --length 4-8 --model MODEL --touching T``
    (defaults otherwise), drawn by a 2-worker DataLoader over :class:`NumberStream`, as uint8
    images and texts, and the seconds they took to draw (0 when read from ``cache``: clear it
    when numgen changes)."""
    path = cache / f"numgen-{model}-{touching:g}-{count}-{seed}.npz" if cache else None
    if path is not None and path.exists():
        saved = np.load(path)
        widths = saved["widths"]
        images = np.split(saved["pixels"], np.cumsum(widths)[:-1], axis=1)
        return images, saved["texts"].tolist(), 0.0
    config = ExportConfig(count=count, min_length=LENGTHS[0], max_length=LENGTHS[1], model=model,
                          seed=seed, touching=touching, shard_size=1000)  # fmt: skip
    start = time.perf_counter()
    images, texts = [], []
    for row in DataLoader(NumberStream(config), batch_size=None, num_workers=2):
        images.append((row["image"][0].numpy() * 255).round().astype(np.uint8))
        texts.append(row["text"])
    seconds = time.perf_counter() - start
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, pixels=np.concatenate(images, axis=1), texts=np.array(texts),
                 widths=np.array([im.shape[1] for im in images]))  # fmt: skip
    return images, texts, seconds


# --- the reader ----------------------------------------------------------------------------------


def to_batch(images: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Numbers ``(28, W_i)`` uint8 as one float batch ``(N, 1, 28, W)`` in [0, 1], each padded with
    background on the right to the widest (rounded up to 4 columns; a number wider than
    ``MAX_WIDTH`` is squeezed to it), and the reader's frames that each number covers."""
    images = [
        np.asarray(Image.fromarray(im).resize((MAX_WIDTH, 28), Image.Resampling.BILINEAR))
        if im.shape[1] > MAX_WIDTH else im
        for im in images
    ]  # fmt: skip
    widths = np.array([im.shape[1] for im in images])
    batch = np.zeros((len(images), 1, 28, -(-widths.max() // 4) * 4), np.float32)
    for i, image in enumerate(images):
        batch[i, 0, :, : image.shape[1]] = image / 255.0
    return torch.from_numpy(batch), torch.from_numpy(-(-widths // COLUMNS_PER_FRAME))


def by_width(widths: np.ndarray, batch_size: int, rng: np.random.Generator | None) -> list:
    """Batches of indices of numbers of similar width, so little of each batch is padding: in
    shuffled order with ``rng`` (runs of 32 batches sorted by width, the batches shuffled), else
    all sorted by width."""
    order = np.argsort(widths, kind="stable") if rng is None else rng.permutation(len(widths))
    if rng is not None:
        run = 32 * batch_size
        order = np.concatenate([
            chunk[np.argsort(widths[chunk], kind="stable")]
            for chunk in np.split(order, range(run, len(order), run))
        ])  # fmt: skip
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()
    )


class Reader(nn.Module):
    """A small CRNN: three conv layers (28 × W → 7 × W/2: a strided one, then two with a pooling
    of rows between), a projection, a bidirectional GRU over the W/2 frames, and a linear layer
    to the ten digits and CTC's blank."""

    def __init__(self, channels: tuple[int, int, int] = (16, 32, 48), hidden: int = 96) -> None:
        super().__init__()
        c1, c2, c3 = channels
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(c1), nn.ReLU(),
            conv_block(c1, c2), nn.MaxPool2d((2, COLUMNS_PER_FRAME // 2)), conv_block(c2, c3),
        )  # fmt: skip
        self.project = nn.Linear(c3 * 7, hidden)
        self.rnn = nn.GRU(hidden, hidden, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * hidden, BLANK + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Log-probabilities ``(T, N, 11)`` over the T = W/2 frames."""
        f = self.features(x)  # (N, C, 7, T)
        f = f.permute(0, 3, 1, 2).flatten(2)  # (N, T, C * 7)
        h, _ = self.rnn(torch.relu(self.project(f)))
        return self.out(h).log_softmax(-1).transpose(0, 1)


def targets_of(texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """CTC targets: all texts' digits in a row, and each text's length."""
    flat = [int(c) for text in texts for c in text]
    return torch.tensor(flat), torch.tensor([len(t) for t in texts])


def train_reader(
    images: list[np.ndarray], texts: list[str], epochs: int, seed: int, batch_size: int = 64
) -> tuple[Reader, list[float]]:
    """A reader trained with CTC on the numbers given (AdamW, one-cycle learning rate); returns it
    and the mean loss of each epoch."""
    torch.manual_seed(seed)
    reader = Reader()
    steps = epochs * (len(images) // batch_size)  # full batches only
    optimizer = torch.optim.AdamW(reader.parameters(), lr=1e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps,
                                                   pct_start=0.15)  # fmt: skip
    ctc = nn.CTCLoss(blank=BLANK, zero_infinity=True)
    rng = np.random.default_rng(seed)
    widths = np.array([im.shape[1] for im in images])
    losses = []
    for epoch in range(epochs):
        total, started = 0.0, time.perf_counter()
        batches = by_width(widths, batch_size, rng)[: len(images) // batch_size]
        for pick in batches:
            x, frames = to_batch([images[i] for i in pick])
            targets, target_lengths = targets_of([texts[i] for i in pick])
            loss = ctc(reader(x), targets, frames, target_lengths)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(reader.parameters(), 5.0)
            optimizer.step()
            schedule.step()
            total += loss.item()
        losses.append(total / len(batches))
        print(
            f"  epoch {epoch + 1}: CTC loss {losses[-1]:.3f} ({time.perf_counter() - started:.0f} s)"
        )
    return reader.eval(), losses


def read(reader: Reader, images: list[np.ndarray], batch_size: int = 256) -> list[str]:
    """Greedy CTC decoding over each number's own columns: the best label per column, repeats
    merged, blanks dropped."""
    texts = [""] * len(images)
    widths = np.array([im.shape[1] for im in images])
    with torch.inference_mode():
        for pick in by_width(widths, batch_size, rng=None):
            x, frames = to_batch([images[i] for i in pick])
            best = reader(x).argmax(-1).T  # (N, T)
            for i, row, n in zip(pick, best.tolist(), frames.tolist(), strict=True):
                row = row[:n]
                merged = [
                    c for k, c in enumerate(row) if c != BLANK and (k == 0 or c != row[k - 1])
                ]
                texts[i] = "".join(str(c) for c in merged)
    return texts


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance: insertions, deletions and substitutions turning ``a`` into ``b``."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def accuracy(read_texts: list[str], true_texts: list[str]) -> dict[str, float]:
    """Exact numbers read, and characters (1 - total edit distance / total length)."""
    exact = np.mean([r == t for r, t in zip(read_texts, true_texts, strict=True)])
    errors = sum(edit_distance(r, t) for r, t in zip(read_texts, true_texts, strict=True))
    return {"exact": float(exact), "characters": 1 - errors / sum(len(t) for t in true_texts)}


# --- the bench -----------------------------------------------------------------------------------


def reader_figures(
    images: list[np.ndarray], texts: list[str], tests: dict, epochs: int, seed: int
) -> dict:
    """Train a reader on one thread and read each test set with it."""
    torch.set_num_threads(1)
    started = time.perf_counter()
    reader, losses = train_reader(images, texts, epochs, seed)
    row = {"train_seconds": time.perf_counter() - started, "losses": losses}
    for spacing, (test_images, test_texts) in tests.items():
        row[spacing] = accuracy(read(reader, test_images), test_texts)
    return row


def readback_figures(model: str, count: int, seed: int) -> dict:
    """4-digit numbers of ``numgen dataset --length 4`` read back by numgen's recognizer through
    their digit boxes (``numgen evaluate --images``), beside real digits laid out the same way."""
    with tempfile.TemporaryDirectory() as folder:
        config = ExportConfig(count=count, min_length=4, max_length=4, model=model, seed=seed)
        export_dataset(folder, config, workers=1, overwrite=True)
        result = evaluate_folder(folder, seed=seed)
    return {"numbers": count, "numgen": result["numbers_read_back"],
            "real": result["real"]["numbers_read_back"]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", help=f"numgen model [{DEFAULT_WRITER}]")
    parser.add_argument(
        "--touching", type=float, action="append", help=f"numgen's --touching [{TOUCHING}]"
    )
    # 40,000 numbers for 8 epochs, a frame every 2 columns: the real reference reads 91.4 % of
    # the touching test numbers, against 87.4 % for 6 epochs with a frame every 4
    # (ocr_transfer_40k.md's reader, on numgen's layout before: ocr_transfer.md at f483406)
    parser.add_argument("--train", type=int, default=40_000, help="training numbers per reader")
    parser.add_argument("--test", type=int, default=1_000, help="test numbers per test set")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, help="keep numgen's drawn numbers here")
    parser.add_argument("--readback", type=int, default=1_000, help="4-digit numbers read back")
    parser.add_argument("--jobs", type=int, default=os.cpu_count(), help="readers trained at once")
    parser.add_argument("--out", default="ocr_transfer", help="results name in bench/results")
    args = parser.parse_args()
    models = args.model or [DEFAULT_WRITER]
    figures = {"machine": machine(), "command": command(env="NUMGEN_DATA_DIR=..."),
               "load_average": [load_average()], "train": args.train, "test": args.test,
               "epochs": args.epochs, "seed": args.seed, "readers": {}}  # fmt: skip
    tests = {
        spacing: real_numbers("test", args.test, spacing, seed=1_000 + k)
        for k, spacing in enumerate((TOUCH, SPACED))
    }
    touchings = args.touching or [TOUCHING]
    sources = {"real": lambda: (*real_numbers("train", args.train, "mixed", args.seed), 0.0)}
    for touching in touchings:  # what numgen's layout costs at each share, apart from its digits
        sources[f"{LAYOUT_ONLY}, touching {touching:g}"] = lambda t=touching: (
            real_numbers_numgen_layout(args.train, t, args.seed)
        )
    for model in models:
        for touching in touchings:
            sources[f"numgen {model}, touching {touching:g}"] = lambda m=model, t=touching: (
                numgen_numbers(m, t, args.train, args.seed, args.cache)
            )
    drawn = {}
    for name, source in sources.items():
        images, texts, draw_seconds = source()
        print(f"{name}: {len(images)} training numbers ({draw_seconds:.0f} s to draw)")
        drawn[name] = (images, texts, draw_seconds)
    # one reader per process, one thread each: small GRU steps scale badly over threads
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(args.jobs, len(drawn)), mp_context=spawn) as pool:
        futures = {
            name: pool.submit(reader_figures, images, texts, tests, args.epochs, args.seed)
            for name, (images, texts, _) in drawn.items()
        }
        for name, future in futures.items():
            figures["readers"][name] = {"draw_seconds": drawn[name][2], **future.result()}
            print(name, {k: v for k, v in figures["readers"][name].items() if k != "losses"})
    figures["readback"] = {
        model: readback_figures(model, args.readback, args.seed) for model in models
    }
    print("read back:", figures["readback"])
    figures["load_average"].append(load_average())
    write_results(args.out, figures, report(figures))


def report(figures: dict) -> str:
    readers = figures["readers"]
    real = readers["real"]
    lines = [
        "# OCR transfer: a reader trained on numgen's numbers, reading real ones",
        "",
        machine_line(figures),
        "",
        f"Each reader (a small CRNN-CTC, `Reader` in the bench) trained on {figures['train']:,} "
        f"numbers of 4-8 digits for {figures['epochs']} epochs (seed {figures['seed']}), then "
        f"read {figures['test']:,} numbers of real MNIST *test* digits laid out by the bench's own "
        "`real_number` in each test set: *touching* (every neighbouring pair meets or overlaps by "
        "up to 3 pixels) and *spaced* (1-6 blank columns). Exact: numbers read without an error; "
        "characters: 1 - edit distance / length. Ratio: exact ÷ the real-trained reader's.",
        "",
        "| trained on | touching: exact | characters | ratio | spaced: exact | characters | ratio |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, row in readers.items():
        cells = []
        for spacing in (TOUCH, SPACED):
            ratio = row[spacing]["exact"] / max(real[spacing]["exact"], 1e-9)
            cells += [f"{row[spacing]['exact']:.1%}", f"{row[spacing]['characters']:.1%}",
                      f"{ratio:.2f}"]  # fmt: skip
        label = "real MNIST training digits (reference)" if name == "real" else f"`{name}`"
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "4-digit numbers of `numgen dataset --length 4` read back by numgen's recognizer through "
        "their digit boxes (`numgen evaluate --images`: a number is read back when its digits "
        "give its text), beside real MNIST training digits laid out by numgen's own layout and "
        "cut at their boxes the same way:",
        "",
        "| model | numbers | read back | real digits, same layout |",
        "| --- | ---: | ---: | ---: |",
    ]
    for model, row in figures["readback"].items():
        lines.append(
            f"| `{model}` | {row['numbers']:,} | {row['numgen']:.1%} | {row['real']:.1%} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
