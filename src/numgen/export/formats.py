"""The four layouts an export writes, one shard at a time, each file atomically.

- ``webdataset``: ``[SPLIT/]shard-000000.tar``, each sample ``KEY.png`` + ``KEY.json``;
- ``parquet``: ``data/SPLIT-00000-of-000NN.parquet``, an ``image`` column (PNG bytes, the Hugging
  Face Image feature) beside the metadata columns;
- ``imagefolder``: ``[SPLIT/]images/KEY.png`` + ``[SPLIT/]metadata.jsonl`` (``file_name``, ...);
- ``png``: ``images/KEY.png`` + ``labels.csv`` (``file``, ``text``, ...), for eyes and scripts.

``[SPLIT/]``: a folder per split when there are several. Row metadata stays typed: ``text`` is a
JSON or Arrow *string*, so "007" never becomes 7.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
from pathlib import Path

from numgen.compose import ComposeError
from numgen.export.recipe import ExportConfig
from numgen.files import atomic_write

IMAGES_DIR = "images"
LABELS_FILE = "labels.csv"
METADATA_FILE = "metadata.jsonl"
STR_COLUMNS = ("text", "ink", "model", "split")
COLUMNS = ("index", "text", "length", "boxes", "style_seed", "width", "height", "ink", "model",
           "split")  # fmt: skip
Rows = list[tuple[bytes, dict]]  # (PNG bytes, metadata) of each image


def prefix(config: ExportConfig, split: str) -> str:
    """The folder of a split's files: the dataset's root when there is one split."""
    return "" if len(config.split) == 1 else f"{split}/"


def shard_file(config: ExportConfig, shard: int, split: str) -> str | None:
    """The file a shard's rows of ``split`` go to (None: the format writes one file per image)."""
    if config.format == "webdataset":
        return f"{prefix(config, split)}shard-{shard:06d}.tar"
    if config.format == "parquet":
        return f"data/{split}-{shard:05d}-of-{config.num_shards:05d}.parquet"
    return None


def image_file(config: ExportConfig, index: int, split: str) -> str:
    """Where the png and imagefolder formats put image ``index``."""
    folder = prefix(config, split) if config.format == "imagefolder" else ""
    return f"{folder}{IMAGES_DIR}/{config.key(index)}.png"


def data_patterns(config: ExportConfig, split: str) -> str:
    """A glob of the split's data files, relative to the dataset root (for the dataset card)."""
    return {
        "webdataset": f"{prefix(config, split)}shard-*.tar",
        "parquet": f"data/{split}-*.parquet",
        "imagefolder": f"{prefix(config, split)}**",
        "png": f"{IMAGES_DIR}/*.png",
    }[config.format]


@contextlib.contextmanager
def disk_errors(path: Path):
    """Turn a full, read-only or forbidden disk into a ComposeError naming the file."""
    try:
        yield
    except OSError as err:
        if err.errno is None or err.strerror is None:
            raise
        raise ComposeError(
            f"{path}: {err.strerror} while writing; free space or choose another --out, then "
            "repeat the command with --resume"
        ) from None


def save_file(path: str, data: bytes) -> None:
    """Write ``data`` to a temporary name beside ``path``, then rename it onto ``path``.

    The all-or-nothing write of :func:`numgen.files.atomic_write` without its per-call ``mkdir``
    and random name: an export owns its folder and writes each name once, and this costs 40 µs a
    file on a RAM disk where ``atomic_write`` costs 200 µs.
    """
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def tar_member(name: str, data: bytes) -> bytes:
    """One file of a tar archive: its 512-byte POSIX ustar header, then ``data`` padded to a
    multiple of 512 bytes. Owner root, mode 644 and time 0, so the same rows give the same bytes.
    (The stdlib's ``tarfile`` writes the same header at ~20 times the cost, which at thousands of
    samples a second is most of a shard's writing time.)"""
    header = bytearray(512)
    header[0 : len(name)] = name.encode()  # names here are short ASCII keys, < 100 bytes
    header[100:108] = b"0000644\0"  # mode
    header[108:116] = header[116:124] = b"0000000\0"  # uid, gid
    header[124:136] = b"%011o\0" % len(data)  # size, octal
    header[136:148] = b"00000000000\0"  # mtime
    header[156:157] = b"0"  # a regular file
    header[257:265] = b"ustar\x0000"  # magic and version
    header[148:156] = b" " * 8  # the checksum counts its own field as spaces
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header) + data + bytes(-len(data) % 512)


def write_tar(path: Path, rows: Rows, config: ExportConfig) -> None:
    """A WebDataset shard: ``KEY.png`` and ``KEY.json`` per sample, then the end-of-archive
    marker (two zero blocks)."""
    members = []
    for png, meta in rows:
        key = config.key(meta["index"])
        members += [
            tar_member(f"{key}.png", png),
            tar_member(f"{key}.json", json.dumps(meta).encode()),
        ]
    members.append(bytes(1024))
    atomic_write(path, lambda tmp: tmp.write_bytes(b"".join(members)))


def arrow_schema():
    """The parquet files' schema, with the Hugging Face features in its metadata so that
    ``datasets`` reads the image column as images."""
    import pyarrow as pa

    fields = [pa.field("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())]))]
    for name in COLUMNS:
        kind = pa.string() if name in STR_COLUMNS else pa.int64()
        fields.append(pa.field(name, pa.list_(pa.list_(pa.int64())) if name == "boxes" else kind))
    features = {"image": {"_type": "Image"}}
    for name in COLUMNS:
        value = {"dtype": "string" if name in STR_COLUMNS else "int64", "_type": "Value"}
        features[name] = (
            {"_type": "List", "feature": {"_type": "List", "feature": value}}
            if name == "boxes"
            else value
        )
    hf = json.dumps({"info": {"features": features}})
    return pa.schema(fields, metadata={"huggingface": hf})


def write_parquet(path: Path, rows: Rows) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ComposeError(
            "the parquet format needs pyarrow: pip install 'numgen[parquet]' (or choose "
            "--format webdataset)"
        ) from None
    columns = {"image": [{"bytes": png, "path": None} for png, _ in rows]}
    for name in COLUMNS:
        columns[name] = [meta[name] for _, meta in rows]
    table = pa.Table.from_pydict(columns, schema=arrow_schema())
    # zstd over the column: cheap, and it finds what PNGs share (or, at png_level 0, all of it)
    atomic_write(
        path, lambda tmp: pq.write_table(table, tmp, compression="zstd", row_group_size=1000)
    )


def write_shard_files(out_dir: Path, config: ExportConfig, shard: int, rows: Rows) -> list[dict]:
    """Write shard ``shard``'s rows in the export's format; returns the metadata kept for the
    final listing (labels.csv, metadata.jsonl) — empty for the formats whose shards hold it."""
    by_split: dict[str, Rows] = {}
    for row in rows:
        by_split.setdefault(row[1]["split"], []).append(row)
    for split, part in by_split.items():
        name = shard_file(config, shard, split)
        path = out_dir / name if name else out_dir
        with disk_errors(path):
            if config.format == "webdataset":
                write_tar(path, part, config)
            elif config.format == "parquet":
                write_parquet(path, part)
            else:
                folder = out_dir / image_file(config, 0, split)
                folder.parent.mkdir(parents=True, exist_ok=True)
                for png, meta in part:
                    save_file(str(out_dir / image_file(config, meta["index"], split)), png)
    if config.format in ("webdataset", "parquet"):
        return []
    return [meta for _, meta in rows]


def write_listing(out_dir: Path, config: ExportConfig, rows: list[dict]) -> None:
    """The png format's labels.csv, or the imagefolder format's metadata.jsonl per split."""
    if config.format == "png":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["file", *COLUMNS])
        for meta in rows:
            file = image_file(config, meta["index"], meta["split"])
            writer.writerow(
                [file, *(json.dumps(meta[c]) if c == "boxes" else meta[c] for c in COLUMNS)]
            )
        atomic_write(out_dir / LABELS_FILE, lambda tmp: tmp.write_text(buffer.getvalue()))
    elif config.format == "imagefolder":
        for split in config.split:
            lines = [
                json.dumps(
                    {
                        "file_name": image_file(config, m["index"], split)[
                            len(prefix(config, split)) :
                        ],
                        **m,
                    }
                )
                for m in rows
                if m["split"] == split
            ]
            if lines:
                path = out_dir / prefix(config, split) / METADATA_FILE
                atomic_write(path, lambda tmp, lines=lines: tmp.write_text("\n".join(lines) + "\n"))
