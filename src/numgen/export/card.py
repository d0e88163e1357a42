"""The dataset card, ``README.md``: the YAML header the Hugging Face Hub reads (configs and data
files, features, splits and counts), then how the data was made, what a row holds, counts per
digit and per length, and a picture of the first rows with their digit boxes."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from numgen import __version__, glyphs, layout, patterns
from numgen.export.formats import COLUMNS, STR_COLUMNS, data_patterns
from numgen.export.recipe import ExportConfig
from numgen.files import atomic_write

CARD_FILE = "README.md"
PICTURE_FILE = "sample_rows.png"


def yaml_lines(value, indent: int = 0) -> list[str]:
    """Block-style YAML of nested dicts, lists and scalars (strings JSON-quoted: valid YAML)."""
    pad = " " * indent
    lines: list[str] = []
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        lead = f"{pad}{key}:" if isinstance(value, dict) else f"{pad}-"
        if isinstance(item, dict | list) and item:
            if isinstance(value, list) and isinstance(item, dict):  # "- key: ..." on one line
                inner = yaml_lines(item, indent + 2)
                lines += [f"{pad}- {inner[0].lstrip()}", *inner[1:]]
            else:
                lines += [lead, *yaml_lines(item, indent + 2)]
        else:
            lines.append(f"{lead} {json.dumps(item)}")
    return lines


def features(config: ExportConfig) -> list[dict]:
    """The columns a loader yields, in the Hub's YAML form."""

    def column(name: str) -> dict:
        if name == "boxes":
            return {"name": name, "list": {"list": "int64"}}
        return {"name": name, "dtype": "string" if name in STR_COLUMNS else "int64"}

    meta = [column(name) for name in COLUMNS]
    if config.format == "webdataset":
        return [{"name": "__key__", "dtype": "string"}, {"name": "__url__", "dtype": "string"},
                {"name": "png", "dtype": "image"}, {"name": "json", "struct": meta}]  # fmt: skip
    return [{"name": "image", "dtype": "image"}, *meta]


def size_category(count: int) -> str:
    """The Hub's size class of ``count`` rows: "n<1K", "1K<n<10K", ..., "100B<n<1T"."""
    names = ["1K", "10K", "100K", "1M", "10M", "100M", "1B", "10B", "100B", "1T"]
    if count < 1000:
        return "n<1K"
    k = min(len(str(count)) - 4, len(names) - 2)  # 4 digits: 1K<n<10K
    return f"{names[k]}<n<{names[k + 1]}"


def layout_line(config: ExportConfig) -> str:
    """The card's words on how each number is laid out (:mod:`numgen.layout`)."""
    return (
        "Layout: each number in its writer's hand, which comes with its style seed "
        f"(`numgen.layout.Hand`): size ×{layout.SIZES[0]}-{layout.SIZES[1]}, "
        f"{layout.SPACINGS[0]}-{layout.SPACINGS[1]} blank columns between neighbours, its "
        "digits' ink set on one line (the median of their bottoms), that line "
        f"up to {layout.LIFT} rows above or below the middle of the line and drifting up to "
        f"±{layout.DRIFT} rows per character (ink never cut at the edges), and per character ±"
        f"{layout.SIZE_JITTER:.0%} size, ±{layout.RISE} row and ±{layout.SPACING_JITTER} columns. "
        f"Neighbouring digits touch or overlap (by 0-{layout.MAX_OVERLAP} columns) in a share "
        f"of pairs averaging {config.touching:g} (`--touching`; each hand's own share lies "
        f"between 0 and {2 * config.touching:g}); the boxes of touching digits may overlap."
    )


def header(config: ExportConfig, splits: dict[str, dict]) -> dict:
    count = sum(s["rows"] for s in splits.values())
    info = {"features": features(config)} if config.format != "png" else {}
    info["splits"] = [{"name": name, "num_bytes": s["bytes"], "num_examples": s["rows"]}
                      for name, s in splits.items()]  # fmt: skip
    return {
        "pretty_name": "numgen handwritten numbers",
        "task_categories": ["image-to-text", "object-detection"],
        "tags": ["synthetic", "ocr", "handwriting", "mnist", "numgen"],
        "size_categories": [size_category(count)],
        "configs": [{"config_name": "default", "data_files": [
            {"split": name, "path": data_patterns(config, name)} for name in splits]}],
        "dataset_info": info,
    }  # fmt: skip


def picture(rows: list[tuple[bytes, dict]], path: Path) -> None:
    """The first rows one below another, each character's box outlined in colour."""
    images = [Image.open(io.BytesIO(png)).convert("RGB") for png, _ in rows]
    width, pad = max(i.width for i in images), 4
    sheet = Image.new("RGB", (width + 2 * pad, sum(i.height + pad for i in images) + pad), "grey")
    draw, y = ImageDraw.Draw(sheet), pad
    for image, (_, meta) in zip(images, rows, strict=True):
        sheet.paste(image, (pad, y))
        for x0, y0, x1, y1 in meta["boxes"]:
            draw.rectangle((pad + x0, y + y0, pad + x1 - 1, y + y1 - 1), outline=(255, 80, 40))
        y += image.height + pad
    scale = max(1, 256 // sheet.height)
    sheet = sheet.resize((sheet.width * scale, sheet.height * scale), Image.Resampling.NEAREST)
    atomic_write(path, lambda tmp: sheet.save(tmp, format="PNG"))


def texts_line(config: ExportConfig) -> str:
    """What the texts are, for the card."""
    if config.texts_file is not None:
        return f"texts from `{config.texts_file}` (sha256 {config.texts_sha256})"
    if config.kind != "integer":
        return f'texts of kind `{config.kind}` (e.g. "{patterns.EXAMPLES[config.kind]}")'
    return f'{config.min_length}-{config.max_length} digits from "{config.alphabet}"'


def character_lines(others: dict[str, int]) -> list[str]:
    """The card's lines on characters: the set numgen writes, the kinds, and the counts of the
    characters other than digits in this dataset."""
    kinds = ", ".join(f'`{k}` ("{e}")' for k, e in patterns.EXAMPLES.items())
    lines = [f"numgen writes {glyphs.CHARSET}; `numgen dataset --kind` draws texts of the kinds "
             f"{kinds}, or `--texts FILE` writes a file's lines.", ""]  # fmt: skip
    if others:
        names = ["space" if c == " " else f"`{c}`" for c in others]
        lines += ["| character | " + " | ".join(names) + " |", "|---" * (len(others) + 1) + "|",
                  "| count | " + " | ".join(f"{n:,}" for n in others.values()) + " |", ""]  # fmt: skip
    return lines


def write_card(
    out_dir: Path, config: ExportConfig, states: list[dict], sample: list[tuple[bytes, dict]]
) -> None:
    """Write README.md and its picture from the shards' states and the first rows."""
    splits: dict[str, dict] = {}
    for state in states:
        for name, part in state["splits"].items():
            total = splits.setdefault(name, {"rows": 0, "bytes": 0})
            total["rows"] += part["rows"]
            total["bytes"] += part["bytes"]
    splits = {name: splits[name] for name in config.split if name in splits}
    digits = np.sum([s["digits"] for s in states], axis=0)
    others: dict[str, int] = {}
    for state in states:  # the characters other than digits ("others": since issue 21)
        for char, n in state.get("others", {}).items():
            others[char] = others.get(char, 0) + n
    others = {c: others[c] for c in glyphs.CHARACTERS if c in others}
    lengths: dict[int, int] = {}
    for state in states:
        for length, n in state["lengths"].items():
            lengths[int(length)] = lengths.get(int(length), 0) + n
    picture(sample, out_dir / PICTURE_FILE)
    loader = {
        "webdataset": 'load_dataset("webdataset", data_dir=OUT)  # or webdataset.WebDataset(urls)',
        "parquet": 'load_dataset("parquet", data_dir=OUT)  # or pyarrow.parquet.read_table',
        "imagefolder": 'load_dataset("imagefolder", data_dir=OUT)',
        "png": "labels.csv: read `text` as a string (pandas: dtype={'text': str})",
    }[config.format]
    sample_rows = [f"| {m['index']} | \"{m['text']}\" | {m['boxes']} | {m['style_seed']} |"
                   for _, m in sample]  # fmt: skip
    lines = [
        "---", *yaml_lines(header(config, splits)), "---", "",
        "# numgen handwritten numbers", "",
        f"{sum(s['rows'] for s in splits.values()):,} images of handwritten numbers drawn by the "
        f"`{config.model}` model of [numgen](https://pypi.org/project/numgen/) {__version__}, "
        f"in the {config.format} format. Made with:", "",
        f"    {config.command()} --out OUT", "",
        f"Seed {config.seed}, {texts_line(config)}, {config.height} pixels tall, {config.ink} "
        f"ink, shards of {config.shard_size:,} images. Splits: "
        + ", ".join(f"{n} {s['rows']:,}" for n, s in splits.items()) + ".", "",
        layout_line(config), "",
        f"Load it: `{loader}`.", "",
        "## A row", "",
        "- `text`: the number as written, a string (leading zeros kept: \"007\");",
        "- `boxes`: one `[x0, y0, x1, y1]` per character other than a space, in the order of "
        "`text`, in pixels of the image (right and bottom edges exclusive), around every pixel of "
        "that character brighter than 10 % ink;",
        "- `length`, `width`, `height`, `ink`, `model`, `split`, `index`;",
        "- `style_seed`: the seed of the handwriting style: `numgen write TEXT --style-seed S` "
        "writes in the same hand, and rows that share a style seed share a hand (where the "
        "model has a legibility check, a style in which a digit was misread is redrawn from "
        "that seed, as `numgen write` redraws it).",
        "", f"![The first rows, character boxes outlined]({PICTURE_FILE})", "",
        "| index | text | boxes | style_seed |", "|---|---|---|---|", *sample_rows,
        "", "## Counts", "",
        "| digit | " + " | ".join(str(d) for d in range(10)) + " |",
        "|---" * 11 + "|",
        "| count | " + " | ".join(f"{int(n):,}" for n in digits) + " |", "",
        *character_lines(others),
        "| length | " + " | ".join(str(k) for k in sorted(lengths)) + " |",
        "|---" * (len(lengths) + 1) + "|",
        "| count | " + " | ".join(f"{lengths[k]:,}" for k in sorted(lengths)) + " |", "",
    ]  # fmt: skip
    atomic_write(out_dir / CARD_FILE, lambda tmp: tmp.write_text("\n".join(lines)))
