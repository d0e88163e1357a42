"""Issue 21: numbers as people write them — dates, amounts, times, phones — in one hand, crisp at
any height. Every target of the issue, measured through the paths users take, at the defaults
(``numgen write``'s writer, ``compose.DEFAULT_WRITER``; ``numgen dataset``'s model for speed):

1. the characters ``numgen write`` accepts (each written in a number);
2. digits inside formatted numbers (``--kind`` decimal, amount, date, time, phone, rows drawn as
   ``numgen dataset`` draws them) cut out by their boxes, framed as MNIST and read by the bundled
   recognizer, beside the digits of plain digit strings of 4-10 digits drawn the same way;
3. each separator's pen width (:func:`numgen.glyphs.pen_widths`: the median diameter of the
   circles inscribed along its ridge, 8x upsampled) over the median pen width of its number's
   digits, from the same rows' boxes (each cut to the columns no other box covers);
4. the mid-grey share (0.15 < ink < 0.85) of the inked pixels (ink > 0.15) at height 128: of
   ``numgen write 2026 --height 128`` and of formatted numbers, beside the same pictures enlarged
   as numgen did before (Lanczos from 28 pixels);
5. read-back of 4-8-digit numbers drawn as ``numgen dataset --length 4-8`` draws them, at height
   96 and at 28 (the same rows), through their digit boxes (as ``numgen evaluate --images``
   reads a dataset) and, beside it, cut at blank columns (``pictures.read_number``);
6. ``numgen dataset --kind date`` against the same count of plain 8-digit numbers (webdataset,
   the default model, one process), alternated.

Writes bench/results/text_marks.{md,json} and docs/numbers.png (dates, amounts and phone numbers
in three styles at 28 and 96 pixels, dark ink on white).

    .venv/bin/python bench/text_marks.py            # ~5 minutes on 2 loaded cores
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from common import REPO, command, load_average, machine, machine_line, write_results
from numgen import compose, export, glyphs, pictures
from numgen.export.render import scaled_boxes
from numgen.hub import load
from numgen.layout import TOUCHING
from numgen.recognizer import Recognizer

KINDS = ("decimal", "amount", "date", "time", "phone")
PICTURE_TEXTS = ("02.12.2026", "-1 234,56", "+7 (812) 555-01-23", "12:30", "(495) 123-4567")
RANGE = (0.8, 1.25)  # the target band of separator / digit pen widths


def rows_of(model, name: str, count: int, seed: int, **options) -> list[tuple[np.ndarray, dict]]:
    """``count`` dataset rows as ``numgen dataset`` draws them: ink ``(height, W)`` in [0, 1]
    and metadata."""
    config = export.ExportConfig(count=count, seed=seed, model=name, **options)
    rows = []
    for start in range(0, count, export.CHUNK):
        batch = export.plan(config, range(start, min(start + export.CHUNK, count)))
        rows += export.render_rows(model, config, batch)
    return [(np.asarray(Image.open(io.BytesIO(png)), np.float32) / 255, meta) for png, meta in rows]


def characters(rows, own_columns: bool = False) -> list[tuple[str, np.ndarray, int]]:
    """Each character other than a space of every row: (char, its box's ink, row number). With
    ``own_columns`` each box is cut to the columns no other box of its row covers: where touching
    neighbours' boxes overlap (by up to 3 columns) both digits' ink lies, and a pen measured
    there is two strokes run together."""
    out = []
    for r, (ink, meta) in enumerate(rows):
        boxes = meta["boxes"]
        for k, (char, (x0, y0, x1, y1)) in enumerate(
            zip(meta["text"].replace(" ", ""), boxes, strict=True)
        ):
            if own_columns:
                x0 = max([x0, *(b[2] for b in boxes[:k] if b[2] > x0)])
                x1 = min([x1, *(b[0] for b in boxes[k + 1 :] if b[0] < x1)])
            out.append((char, ink[y0:y1, x0 : max(x1, x0 + 1)], r))
    return out


def read_digits_of(judge, chars) -> list[bool]:
    """Whether each digit among ``chars`` is read as itself, framed as MNIST."""
    digits = [(c, box) for c, box, _ in chars if c in glyphs.DIGITS]
    cells = np.stack([pictures.centre_like_mnist(box) for _, box in digits])
    read = pictures.read_digits(judge, cells)
    return [str(d) == c for d, (c, _) in zip(read, digits, strict=True)]


def read_digits(judge, chars) -> tuple[int, int]:
    """(correct, total) readings of the digits among ``chars``, each framed as MNIST."""
    right = read_digits_of(judge, chars)
    return sum(right), len(right)


def pen_ratios(chars) -> dict[str, list[float]]:
    """Each separator's pen width over its number's digits' median pen width, by character."""
    boxes = [np.pad(box, 3) for _, box, _ in chars]  # room for the upsampled edge
    size = max(max(b.shape) for b in boxes)
    canvas = np.zeros((len(boxes), size, size), np.float32)
    for k, box in enumerate(boxes):
        canvas[k, : box.shape[0], : box.shape[1]] = box
    widths = glyphs.pen_widths(canvas)
    by_row: dict[int, list[float]] = {}
    for (char, _, r), w in zip(chars, widths, strict=True):
        if char in glyphs.DIGITS:
            by_row.setdefault(r, []).append(w)
    ratios: dict[str, list[float]] = {}
    for (char, _, r), w in zip(chars, widths, strict=True):
        if char not in glyphs.DIGITS:
            ratios.setdefault(char, []).append(float(w / np.median(by_row[r])))
    return ratios


def mid_grey(pixels: np.ndarray) -> float:
    """Of the inked pixels (ink > 0.15), the share with ink below 0.85."""
    ink = pixels[pixels > 0.15]
    return float((ink < 0.85).mean())


def enlarged(ink28: np.ndarray, height: int) -> np.ndarray:
    """The 28-pixel picture enlarged as numgen did before issue 21 (Lanczos), ink in [0, 1]."""
    grey = Image.fromarray((ink28 * 255 + 0.5).astype(np.uint8))
    width = max(1, round(grey.width * height / grey.height))
    return np.asarray(grey.resize((width, height), Image.Resampling.LANCZOS), np.float32) / 255


def crispness(writer, rows) -> dict:
    two = writer.write("2026")
    tall = np.asarray(writer.write("2026", height=128), np.float32) / 255
    formatted_now = [np.asarray(compose.to_picture(ink, 128), np.float32) / 255 for ink, _ in rows]
    return {
        "write_2026": {"before": mid_grey(enlarged(np.asarray(two, np.float32) / 255, 128)),
                       "now": mid_grey(tall)},
        "formatted": {"before": float(np.mean([mid_grey(enlarged(ink, 128)) for ink, _ in rows])),
                      "now": float(np.mean([mid_grey(p) for p in formatted_now]))},
        "numbers": len(rows),
    }  # fmt: skip


def readback(model, name: str, judge, n: int, touching: float) -> dict:
    """Exact read-back of ``n`` numbers of 4-8 digits drawn as ``numgen dataset --length 4-8``
    draws them, at heights 28 and 96 (the same rows): through each digit's box (cut, framed as
    MNIST and recognised, as ``numgen evaluate --images`` reads a dataset: a number is read back
    when all its digits are), and by ``pictures.read_number``, which cuts a picture at blank
    columns and so reads touching neighbours as one piece at any height."""
    figures = {"numbers": n}
    by_height = {}
    for height in (28, 96):
        rows = by_height[height] = rows_of(
            model, name, n, seed=21, min_length=4, max_length=8, height=height, touching=touching
        )
        figures[f"at_{height}"] = read_back(judge, rows)
        by_columns = sum(pictures.read_number(judge, ink) == meta["text"] for ink, meta in rows)
        figures[f"columns_at_{height}"] = by_columns / n
    # controls: whether the crisp outline or any redrawing of the 28-pixel rows costs the 96-pixel
    # read-back — the same rows enlarged to 96 as numgen did before (Lanczos), and the crisp
    # 96-pixel rows brought back to 28 (box filter) and read with the 28-pixel boxes
    figures["enlarged_96"] = read_back(judge, [
        (big := enlarged(ink, 96), meta | {"boxes": scaled_boxes(meta["boxes"], ink.shape[1], big.shape)})
        for ink, meta in by_height[28]
    ])  # fmt: skip
    figures["crisp_back_at_28"] = read_back(judge, [
        (np.asarray(Image.fromarray(big).resize(small.shape[::-1], Image.Resampling.BOX)), meta)
        for (big, _), (small, meta) in zip(by_height[96], by_height[28], strict=True)
    ])  # fmt: skip
    return figures


def read_back(judge, rows) -> float:
    """The share of ``rows`` whose digits, each cut by its box and framed as MNIST, all read as
    their text."""
    read = iter(read_digits_of(judge, characters(rows)))
    return sum(all(next(read) for _ in meta["text"]) for _, meta in rows) / len(rows)


def dataset_speed(count: int, repeats: int, touching: float) -> dict:
    """images/s of ``--kind date`` and of plain 8-digit numbers (default model, webdataset, one
    process), alternated ``repeats`` times; the best of each."""
    model = load(export.ExportConfig(count=1).model)
    rates: dict[str, list[float]] = {"date": [], "integer_8": []}
    options = {"date": {"kind": "date"}, "integer_8": {"min_length": 8, "max_length": 8}}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            for name in rates:
                config = export.ExportConfig(
                    count=count, seed=r, touching=touching, **options[name]
                )
                summary = export.export_dataset(Path(tmp) / f"{name}{r}", config, model, workers=1)
                rates[name].append(summary["images_per_s"])
    best = {name: max(v) for name, v in rates.items()}
    return {"count": count, "rates": rates, "best": best,
            "ratio": best["date"] / best["integer_8"], "model": export.ExportConfig(count=1).model}  # fmt: skip


def picture(writer, path: Path) -> None:
    """Dates, amounts, times and phone numbers in three styles: at 28 pixels all on one line per
    style, then at 96 pixels on two lines per style; dark ink on white."""
    short = PICTURE_TEXTS[:2] + PICTURE_TEXTS[3:4]  # date, amount, time
    lines = [(28, PICTURE_TEXTS, style) for style in range(3)]  # (height, texts, style seed)
    lines += [
        line for style in range(3) for line in ((96, short, style), (96, PICTURE_TEXTS[2:3], style))
    ]
    strips = []
    for height, texts, style in lines:
        strips.append([writer.write(t, style_seed=style, seed=style, height=height, ink="dark")
                       for t in texts])  # fmt: skip
    margin = 16
    rows = []
    for strip in strips:
        gap = strip[0].height // 2  # between numbers: half their height
        rows.append((sum(p.width for p in strip) + gap * (len(strip) - 1), gap, strip))
    width = max(r[0] for r in rows) + 2 * margin
    sheet = Image.new("L", (width, sum(s[0].height + 8 for s in strips) + 2 * margin), 255)
    y = margin
    for _, gap, strip in rows:
        x = margin
        for p in strip:
            sheet.paste(p, (x, y))
            x += p.width + gap
        y += strip[0].height + 8
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def markdown(f: dict) -> str:
    within = f["pen_ratio"]["within_share"]
    rows = [
        "# Numbers as people write them (issue 21)", "",
        f"Writer: `{f['writer']}` (numgen's default, `compose.DEFAULT_WRITER`); dataset speed: "
        f"`{f['speed']['model']}` (`numgen dataset`'s default). Rows drawn with `--touching "
        f"{f['touching']:g}`: a digit cut at its box holds the ink its touching neighbours lay "
        f"in it. {machine_line(f)}", "",
        "| measure | before | now | target |", "| --- | ---: | ---: | ---: |",
        f"| characters `numgen write` accepts | 0-9 | `{f['characters']}` | 0-9 and `. , - + / : ( )` and space |",
        f"| digits inside formatted numbers recognised ({f['recognised']['formatted_digits']:,}) | – | "
        f"{f['recognised']['formatted']:.2%} | ≥ 99 % |",
        f"| … plain 4-10-digit numbers' digits ({f['recognised']['plain_digits']:,}) | – | "
        f"{f['recognised']['plain']:.2%} | within 0.5 pt: {f['recognised']['gap_pt']:+.2f} pt |",
        f"| separators' pen width ÷ their number's digits' ({f['pen_ratio']['count']:,}) | – | "
        f"{within:.1%} within 0.8-1.25 (median {f['pen_ratio']['median']:.2f}) | ≥ 95 % |",
        f"| mid-grey share of inked pixels, `numgen write 2026 --height 128` | "
        f"{f['crisp']['write_2026']['before']:.1%} | {f['crisp']['write_2026']['now']:.1%} | ≤ 25 % |",
        f"| … of {f['crisp']['numbers']} formatted numbers at 128 px | "
        f"{f['crisp']['formatted']['before']:.1%} | {f['crisp']['formatted']['now']:.1%} | ≤ 25 % |",
        f"| read-back of {f['readback']['numbers']} 4-8-digit numbers through their digit boxes: "
        f"at 28 px / at 96 px | – | {f['readback']['at_28']:.1%} / {f['readback']['at_96']:.1%} "
        "| within 1 pt |",
        f"| … controls: the 28-px rows enlarged to 96 px as before (Lanczos) / the crisp 96-px rows "
        f"brought back to 28 px (box filter, 28-px boxes) | – | {f['readback']['enlarged_96']:.1%} "
        f"/ {f['readback']['crisp_back_at_28']:.1%} | – |",
        f"| … the same numbers cut at blank columns (`read_number`; touching digits, "
        f"{f['touching']:.0%} of pairs here, defeat it at any height) | – | {f['readback']['columns_at_28']:.1%} / "
        f"{f['readback']['columns_at_96']:.1%} | – |",
        f"| `numgen dataset --kind date` ÷ plain 8-digit numbers, images/s ({f['speed']['count']:,} "
        f"each, best of {len(f['speed']['rates']['date'])}) | – | {f['speed']['ratio']:.2f} "
        f"({f['speed']['best']['date']:,.0f} / {f['speed']['best']['integer_8']:,.0f}) | ≥ 0.8 |",
        "", "Per kind: digits recognised, and separators' pen-width ratios (median, share within "
        "0.8-1.25):", "", "| kind | digits | recognised |", "| --- | ---: | ---: |",
        *(f"| {k} | {v['digits']:,} | {v['recognised']:.2%} |" for k, v in f["per_kind"].items()),
        "", "| character | count | median ratio | within 0.8-1.25 |", "| --- | ---: | ---: | ---: |",
        *(f"| `{c}` | {v['count']:,} | {v['median']:.2f} | {v['within']:.1%} |"
          for c, v in f["pen_ratio"]["per_char"].items()),
        "", "![Dates, amounts, times and phone numbers in three styles at 28 and 96 pixels]"
        "(../../docs/numbers.png)",
    ]  # fmt: skip
    return "\n".join(rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-kind", type=int, default=200, help="formatted numbers per kind")
    parser.add_argument("--readback", type=int, default=1000, help="numbers read at 28, 96 px")
    parser.add_argument("--speed-count", type=int, default=5000, help="images per dataset run")
    parser.add_argument("--repeats", type=int, default=2, help="alternated dataset runs")
    parser.add_argument("--touching", type=float, default=TOUCHING, help="the rows' --touching")
    parser.add_argument("--out", default="text_marks")
    args = parser.parse_args()
    torch.set_num_threads(1)  # as `numgen dataset` draws: one thread, steadier on a shared machine
    load_at_start = load_average()
    started = time.perf_counter()
    writer, judge = compose.Writer.from_pretrained(), Recognizer.from_pretrained()
    name = compose.DEFAULT_WRITER
    accepted = "".join(c for c in glyphs.CHARACTERS if writer.write(f"1{c}2").width > 0)
    per_kind, all_chars, rows_all = {}, [], []
    for k, kind in enumerate(KINDS):
        rows = rows_of(writer.model, name, args.per_kind, seed=k, kind=kind, touching=args.touching)
        right, total = read_digits(judge, characters(rows))
        per_kind[kind] = {"digits": total, "recognised": right / total}
        all_chars += [
            (c, box, r + len(rows_all)) for c, box, r in characters(rows, own_columns=True)
        ]
        rows_all += rows
        print(kind, per_kind[kind], flush=True)
    plain_rows = rows_of(
        writer.model, name, args.per_kind * 2, seed=9, min_length=4, max_length=10,
        touching=args.touching,
    )  # fmt: skip
    plain_right, plain_total = read_digits(judge, characters(plain_rows))
    formatted_right = sum(v["recognised"] * v["digits"] for v in per_kind.values())
    formatted_total = sum(v["digits"] for v in per_kind.values())
    ratios = pen_ratios(all_chars)
    flat = np.concatenate([np.array(v) for v in ratios.values()])
    inside = lambda v: float(np.mean((np.array(v) >= RANGE[0]) & (np.array(v) <= RANGE[1])))  # noqa: E731
    figures = {
        "command": command(), "machine": machine(), "writer": name, "characters": accepted,
        "touching": args.touching,
        "recognised": {
            "formatted": formatted_right / formatted_total, "formatted_digits": formatted_total,
            "plain": plain_right / plain_total, "plain_digits": plain_total,
            "gap_pt": 100 * (formatted_right / formatted_total - plain_right / plain_total),
        },
        "per_kind": per_kind,
        "pen_ratio": {
            "count": len(flat), "median": float(np.median(flat)), "within_share": inside(flat),
            "per_char": {c: {"count": len(v), "median": float(np.median(v)), "within": inside(v)}
                         for c, v in sorted(ratios.items())},
        },
        "crisp": crispness(writer, rows_all[:: max(1, len(rows_all) // 100)]),
    }  # fmt: skip
    print(figures["recognised"], figures["pen_ratio"]["within_share"], figures["crisp"], flush=True)
    figures["readback"] = readback(writer.model, name, judge, args.readback, args.touching)
    print(figures["readback"], flush=True)
    figures["speed"] = dataset_speed(args.speed_count, args.repeats, args.touching)
    print(figures["speed"], flush=True)
    picture(writer, REPO / "docs" / "numbers.png")
    figures["seconds"] = time.perf_counter() - started
    figures["load_average"] = [load_at_start, load_average()]
    write_results(args.out, figures, markdown(figures))


if __name__ == "__main__":
    main()
