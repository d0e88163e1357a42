"""Labelled images out of a dataset folder, whatever made it: every layout ``numgen dataset``
writes, and the plain folder of per-class subfolders that most tools write.

=====================  ======================================================================
layout                 what marks it, and where each image's label comes from
=====================  ======================================================================
WebDataset             ``*.tar`` shards: ``KEY.png`` (or .jpg …) beside ``KEY.json`` (``text``)
Parquet                ``*.parquet`` files: an ``image`` column (bytes) and ``text``
ImageFolder            ``metadata.jsonl`` or ``metadata.csv`` (``file_name`` and ``text``),
                       in the folder or in its split folders
PNGs + labels.csv      ``labels.csv`` (``file`` and ``text``)
per-class folders      subfolders named by their label (``0/``, ``1/`` … or ``2026/``)
=====================  ======================================================================

A label is a string of digits (``text``; ``label`` is read where ``text`` is missing); a row may
give ``boxes``, one ``[x0, y0, x1, y1]`` per digit in pixels. A row with boxes may label any text,
as ``numgen dataset --kind date / amount / phone`` writes it: one box per character other than a
space, of which the digits and their boxes are kept (the dots, commas, dashes and brackets are
not digits to read). An image without a label, a label that is not digits (without boxes that
locate its digits), or a listed image that is missing is a :class:`FolderError` naming the file.
"""

from __future__ import annotations

import csv
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

from numgen.errors import NumgenError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
LISTINGS = ("labels.csv", "metadata.jsonl", "metadata.csv")  # the files that label images
STATE_DIR = ".numgen"  # an export's own state files, not data


class FolderError(NumgenError, ValueError):
    """A dataset folder numgen cannot read: names the file and what is wrong."""


@dataclass(frozen=True)
class Sample:
    """One labelled image: ``source`` is its file or its bytes, ``name`` says where it is."""

    name: str
    source: Path | bytes
    text: str
    boxes: tuple[tuple[int, int, int, int], ...] | None = None


def read_folder(folder: str | Path) -> tuple[str, list[Sample]]:
    """The layout of ``folder`` (see the module's table) and its samples, in a stable order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FolderError(f"{folder}: not a folder; give the folder a dataset was written into")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and STATE_DIR not in p.parts)
    if tars := [p for p in files if p.suffix == ".tar"]:
        return "webdataset", [s for tar in tars for s in _tar_samples(tar, folder)]
    if parquets := [p for p in files if p.suffix == ".parquet"]:
        return "parquet", [s for path in parquets for s in _parquet_samples(path, folder)]
    listings = [p for p in files if p.name in LISTINGS]
    if listings:
        layout = "png" if any(p.name == "labels.csv" for p in listings) else "imagefolder"
        # a picture in the root folder that no row names is the dataset card's, not a sample
        images = {p for p in files if p.suffix.lower() in IMAGE_SUFFIXES and p.parent != folder}
        samples = [s for path in listings for s in _listed_samples(path, folder)]
        unlisted = sorted(images - {s.source for s in samples})
        if unlisted:
            raise FolderError(
                f"{unlisted[0].relative_to(folder)}: an image without a label (no row in "
                f"{', '.join(str(p.relative_to(folder)) for p in listings)})"
            )
        return layout, samples
    samples = [
        Sample(str(p.relative_to(folder)), p, p.parent.name)
        for p in files
        if p.suffix.lower() in IMAGE_SUFFIXES and p.parent != folder
    ]
    if not samples:
        raise FolderError(
            f"{folder}: no dataset found (no .tar or .parquet files, no labels.csv or "
            "metadata.jsonl/.csv, no per-class subfolders of images)"
        )
    for sample in samples:
        _check_text(sample.text, f"{sample.name}: its folder's name")
    return "classes", samples


def _check_text(text: object, where: str) -> str:
    """The label as a string of digits, else a FolderError saying where it is missing or bad."""
    if text is None or text == "":
        raise FolderError(f"{where}: no label; give each image its digits (e.g. 7 or 2026)")
    text = str(text)
    if not text.isdigit() or not text.isascii():
        raise FolderError(f"{where}: the label {text!r} is not a string of digits 0-9")
    return text


def _boxes(value: object, where: str) -> tuple[tuple[int, int, int, int], ...] | None:
    """A row's ``boxes`` (a list or its JSON text), or None where the row gives none."""
    if value is None or value == "":
        return None
    try:
        boxes = json.loads(value) if isinstance(value, str) else value
        boxes = tuple(tuple(int(v) for v in box) for box in boxes)
        if any(len(box) != 4 for box in boxes):
            raise ValueError
        return boxes
    except (ValueError, TypeError):
        raise FolderError(
            f"{where}: boxes {str(value)[:80]!r} are not [[x0, y0, x1, y1], ...]"
        ) from None


def _label(row: dict, where: str) -> tuple[str, tuple | None]:
    text, boxes = row.get("text", row.get("label")), _boxes(row.get("boxes"), where)
    if boxes is not None and isinstance(text, str) and text and not text.isdigit():
        text, boxes = _digits_at_boxes(text, boxes, where)
    return _check_text(text, where), boxes


def _digits_at_boxes(text: str, boxes: tuple, where: str) -> tuple[str, tuple]:
    """The digits of ``text`` and their boxes, from one box per character other than a space."""
    chars = [c for c in text if not c.isspace()]
    if len(chars) != len(boxes):
        raise FolderError(
            f"{where}: {len(boxes)} boxes for the {len(chars)} characters of {text!r} other than "
            "spaces; give one box per character"
        )
    kept = [(c, box) for c, box in zip(chars, boxes, strict=True) if c in "0123456789"]
    return "".join(c for c, _ in kept), tuple(box for _, box in kept)


def _tar_samples(path: Path, root: Path) -> list[Sample]:
    """A WebDataset shard's samples: each image member with the JSON member of its key."""
    name = path.relative_to(root)
    try:
        with tarfile.open(path) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
    except (tarfile.TarError, OSError, EOFError) as err:
        raise FolderError(f"{name}: not a readable tar shard ({err})") from None
    samples = []
    for member, data in members.items():
        key, dot, suffix = member.rpartition(".")
        if not dot or f".{suffix.lower()}" not in IMAGE_SUFFIXES:
            continue
        where = f"{name}:{member}"
        if f"{key}.json" not in members:
            raise FolderError(f"{where}: an image without a label (no {key}.json in the shard)")
        try:
            row = json.loads(members[f"{key}.json"])
        except ValueError:
            raise FolderError(f"{name}:{key}.json: not valid JSON") from None
        samples.append(Sample(where, data, *_label(row, f"{name}:{key}.json")))
    return samples


def _parquet_samples(path: Path, root: Path) -> list[Sample]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise FolderError(
            f"{path.relative_to(root)}: reading parquet needs pyarrow: pip install "
            "'numgen[parquet]'"
        ) from None
    name = path.relative_to(root)
    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as err:  # pyarrow raises its own error types for damaged files
        raise FolderError(f"{name}: not a readable parquet file ({err})") from None
    samples = []
    for i, row in enumerate(rows):
        image = row.get("image")
        data = image.get("bytes") if isinstance(image, dict) else image
        where = f"{name}: row {i}"
        if not isinstance(data, bytes):
            raise FolderError(f"{where}: no image bytes in its 'image' column")
        samples.append(Sample(where, data, *_label(row, where)))
    return samples


def _listed_samples(listing: Path, root: Path) -> list[Sample]:
    """The images a labels.csv or metadata.jsonl/.csv names, relative to its own folder."""
    name = listing.relative_to(root)
    text = listing.read_text()
    if listing.suffix == ".jsonl":
        try:
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        except ValueError as err:
            raise FolderError(f"{name}: a line is not valid JSON ({err})") from None
    else:
        rows = list(csv.DictReader(io.StringIO(text)))
    samples = []
    for i, row in enumerate(rows, 1):
        file = row.get("file_name", row.get("file"))
        if not file:
            raise FolderError(f"{name}: row {i} names no image (a 'file_name' or 'file' column)")
        path = listing.parent / file
        if not path.is_file():
            raise FolderError(f"{name}: row {i} names {file}, which does not exist")
        samples.append(Sample(str(path.relative_to(root)), path, *_label(row, f"{name}: {file}")))
    return samples
