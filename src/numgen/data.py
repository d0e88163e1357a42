"""Digits in, arrays out: MNIST from IDX files and the embedded offline default.

Fetching the IDX files from the internet lives apart, below this module, in
:mod:`numgen.download`.

Every loader returns a :class:`Digits` — ``images`` uint8 ``(N, 28, 28)`` in [0, 255] and
``labels`` int64 ``(N,)`` in [0, 9] — so the rest of numgen never cares where digits came from.
This module imports nothing else of numgen but the downloader and the errors.
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import logging
import math
import os
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from numgen.download import (
    DATA_DIR_ENV,
    MD5,
    default_cache_dir,
    download_mnist,
    md5_of,
    missing_error,
    missing_files,
)
from numgen.errors import DataError, NonFiniteImage

logger = logging.getLogger(__name__)


# The four standard files: split -> (images file, labels file).
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MNIST_COUNTS = {"train": 60_000, "test": 10_000}
INK_LEVEL = 0.1  # a pixel of an image in [0, 1] holds ink above this; fainter is background

# Canonical MD5s (the ones torchvision checks) of the uncompressed files, so a gunzipped copy
# passes too; those of the .gz files are numgen.download.MD5.
MD5_UNCOMPRESSED = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}


@dataclass(frozen=True)
class Digits:
    """A labelled set of 28×28 grey-scale digits."""

    images: np.ndarray  # uint8 (N, 28, 28), 0 = background, 255 = ink
    labels: np.ndarray  # int64 (N,), digit 0-9
    source: str  # where they came from, for reports

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, n: int) -> Digits:
        """The first ``n`` digits (all of them if there are fewer)."""
        return Digits(self.images[:n], self.labels[:n], f"{self.source} (first {n})")


# --- IDX files -----------------------------------------------------------------------------------

_IDX_UBYTE = 0x08


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (gzipped or not) into a uint8 array with the shape its header gives.

    Raises :class:`DataError` naming the file for bad gzip data, a bad magic number, a truncated
    body or trailing bytes.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":  # gzip magic; decide by content, not by the file name
            raw = gzip.decompress(raw)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, EOFError, zlib.error) as err:  # zlib.error: a corrupt deflate stream
        raise DataError(
            f"{path}: not a valid gzip file, damaged or truncated ({err}); delete it and fetch "
            "it again"
        ) from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != _IDX_UBYTE or not 1 <= raw[3] <= 4:
        raise DataError(
            f"{path}: bad magic number {raw[:4].hex() or '(empty file)'}; "
            "expected an unsigned-byte IDX file (0x0000080N)"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated header ({len(raw)} bytes)")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "has trailing bytes"
        raise DataError(
            f"{path}: {what}: header says shape {shape} ({expected:,} bytes), file has "
            f"{len(raw):,} bytes; delete it and fetch it again"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _locate(data_dir: Path, stem: str) -> Path | None:
    """The file for ``stem`` (gzipped or not, named with '-idx' or '.idx'), or None."""
    dotted = stem.replace("-idx", ".idx")
    for name in (stem + ".gz", stem, dotted + ".gz", dotted):
        if (data_dir / name).is_file():
            return data_dir / name
    return None


def _find_file(data_dir: Path, stem: str) -> Path:
    path = _locate(data_dir, stem)
    if path is None:
        raise DataError(
            f"{data_dir}: no {stem}.gz (or {stem}); put the MNIST files there or point "
            f"--data-dir / {DATA_DIR_ENV} at the folder that holds them"
        )
    return path


def read_mnist_dir(data_dir: str | Path, split: str = "train") -> Digits:
    """Load one split of MNIST from a directory holding the standard IDX files."""
    if split not in MNIST_FILES:
        raise DataError(f"unknown split {split!r}; use 'train' or 'test'")
    data_dir = Path(data_dir)
    image_file, label_file = (_find_file(data_dir, stem) for stem in MNIST_FILES[split])
    images, labels = read_idx(image_file), read_idx(label_file)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(f"{image_file}: expected images of shape (N, 28, 28), got {images.shape}")
    if labels.ndim != 1:
        raise DataError(f"{label_file}: expected a 1-D label array, got shape {labels.shape}")
    if len(images) != MNIST_COUNTS[split] or len(labels) != MNIST_COUNTS[split]:
        raise DataError(
            f"{image_file} / {label_file}: wrong counts ({len(images):,} images, {len(labels):,} "
            f"labels); MNIST {split} has {MNIST_COUNTS[split]:,}"
        )
    if labels.max() > 9:
        raise DataError(f"{label_file}: label {int(labels.max())} outside 0-9")
    return Digits(images, labels.astype(np.int64), f"MNIST {split} ({data_dir})")


# --- checksums -----------------------------------------------------------------------------------


def check_files(data_dir: str | Path) -> dict[str, dict]:
    """Size and MD5 status of the four MNIST files in ``data_dir``, keyed by file name.

    Each entry is ``{"bytes": int | None, "md5": str | None, "status": str}`` with status 'ok',
    'wrong md5' or 'missing'. For reports, so it never raises; :func:`verify_checksums` does.
    """
    data_dir = Path(data_dir)
    report: dict[str, dict] = {}
    for stem, raw_md5 in MD5_UNCOMPRESSED.items():
        path = _locate(data_dir, stem)
        if path is None:
            report[stem + ".gz"] = {"bytes": None, "md5": None, "status": "missing"}
            continue
        digest = md5_of(path)
        status = "ok" if digest in (MD5[stem + ".gz"], raw_md5) else "wrong md5"
        report[path.name] = {"bytes": path.stat().st_size, "md5": digest, "status": status}
    return report


def verify_checksums(data_dir: str | Path) -> dict[str, str]:
    """MD5 of each MNIST file in ``data_dir``; DataError naming any missing or non-canonical."""
    report = check_files(data_dir)
    bad = [
        f"{name} ({entry['status']})" for name, entry in report.items() if entry["status"] != "ok"
    ]
    if bad:
        raise DataError(
            f"{data_dir}: {', '.join(bad)}; replace them with the canonical MNIST files "
            f"(numgen.download.MD5 lists them), or leave out --data-dir / {DATA_DIR_ENV} so that "
            "numgen downloads them"
        )
    return {name: entry["md5"] for name, entry in report.items()}


# --- the embedded default ------------------------------------------------------------------------

EMBEDDED_TEST_PER_CLASS = 100
# 5,000 real MNIST digits, 500 per class, shipped inside numgen (see embedded/README.md for where
# they come from and their licence): uint8 images (5000, 28, 28) and labels (5000,).
EMBEDDED_FILE = Path(__file__).parent / "embedded" / "mnist_5k.npz"


def read_embedded() -> tuple[np.ndarray, np.ndarray]:
    """All 5,000 embedded digits in file order: (images uint8 (5000, 28, 28), labels uint8)."""
    with np.load(EMBEDDED_FILE) as arrays:
        return arrays["images"], arrays["labels"]


def load_embedded(split: str = "train") -> Digits:
    """Real MNIST digits that ship inside numgen: 5,000, 500 per class.

    Split deterministically: the last 100 of each class (in file order) are the test part
    (1,000 digits), the first 400 of each class the training part (4,000 digits). The file
    holds the classes one after another; a split takes them in turn (a 0, a 1, ... a 9, the next
    0, ...), so that its first N digits (``--limit``) hold every class, as MNIST's do.
    """
    if split not in MNIST_FILES:
        raise DataError(f"unknown split {split!r}; use 'train' or 'test'")
    images, labels = read_embedded()
    labels = labels.astype(np.int64)
    keep = []
    for digit in range(10):
        index = np.flatnonzero(labels == digit)
        cut = len(index) - EMBEDDED_TEST_PER_CLASS
        keep.append(index[cut:] if split == "test" else index[:cut])
    order = np.stack(keep, axis=1).ravel()  # (per class, 10): the classes in turn
    return Digits(images[order], labels[order], f"embedded MNIST subset ({split})")


# --- one entry point -----------------------------------------------------------------------------


def resolve_data_dir(data_dir: str | Path | None = None) -> Path | None:
    """The MNIST directory: the argument, else ``$NUMGEN_DATA_DIR``, else None."""
    if data_dir is not None:
        return Path(data_dir)
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env) if env else None


def load_digits(
    dataset: str = "mnist",
    split: str = "train",
    data_dir: str | Path | None = None,
    download: bool = True,
    cache_dir: str | Path | None = None,
) -> Digits:
    """Load ``dataset`` ('mnist' or 'embedded') for ``split`` ('train' or 'test').

    MNIST is read from ``data_dir`` (or ``$NUMGEN_DATA_DIR``) when one is given; otherwise from
    the download cache (``cache_dir``, default :func:`numgen.download.default_cache_dir`), fetching the missing
    files first unless ``download`` is False.
    """
    if dataset not in ("mnist", "embedded"):
        raise DataError(f"unknown dataset {dataset!r}; use 'mnist' or 'embedded'")
    digits = _load_digits(dataset, split, data_dir, download, cache_dir)
    logger.info("%s: %d digits", digits.source, len(digits))
    return digits


def _load_digits(
    dataset: str,
    split: str,
    data_dir: str | Path | None,
    download: bool,
    cache_dir: str | Path | None,
) -> Digits:
    if dataset == "embedded":
        return load_embedded(split)
    directory = resolve_data_dir(data_dir)
    if directory is None:
        directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        if download:
            download_mnist(directory)
        elif missing := missing_files(directory, MD5):
            raise missing_error(directory, MD5, missing, [])
    return read_mnist_dir(directory, split)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """[0, 1] floats (or uint8) -> uint8 in [0, 255]; NaN or infinity is a
    :class:`NonFiniteImage`, never a black pixel."""
    if images.dtype == np.uint8:
        return images
    return (np.clip(check_finite_pixels(images), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def check_finite_pixels(images: np.ndarray) -> np.ndarray:
    """``images`` if every value is finite, else a :class:`NonFiniteImage`: every image numgen
    writes passes here before it is encoded (a NaN would be written as black, with exit 0)."""
    finite = np.isfinite(images)
    if not finite.all():
        raise NonFiniteImage(
            f"the model drew {finite.size - finite.sum():,} NaN or infinite pixels of "
            f"{finite.size:,}: its weights overflow (damaged, or training diverged); restore "
            "the model's files or train it again"
        )
    return images


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 ``(N, 28, 28)`` -> float32 tensor ``(N, 1, 28, 28)`` with values in [0, 1]."""
    # torch.tensor copies: arrays read from IDX files are read-only views of the file's bytes.
    return torch.tensor(images, dtype=torch.float32).div_(255.0).unsqueeze(1)


# --- the data check report -----------------------------------------------------------------------


def _image_hashes(images: np.ndarray) -> list[bytes]:
    """A 16-byte BLAKE2 digest per image: equal digests mean pixel-identical images."""
    rows = np.ascontiguousarray(images).reshape(len(images), -1)
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in rows]


def check(digits_by_split: Mapping[str, Digits]) -> dict:
    """Sanity figures for each split, and the exact duplicates shared between splits.

    Returns ``{"splits": {split: figures}, "shared": {"train/test": n}}``. The figures of a split:
    count, image_shape, dtype, pixel_min, pixel_max, label_min, label_max, class_counts (digits
    0-9), balance (largest class / smallest, inf when a class is absent), empty_images (all
    zero) and duplicate_images (pixel-identical copies of an earlier image in the same split).
    ``shared["a/b"]`` counts the images of split b that also appear in split a. Full MNIST takes
    well under a second.
    """
    hashes = {name: _image_hashes(digits.images) for name, digits in digits_by_split.items()}
    splits = {}
    for name, digits in digits_by_split.items():
        images, labels = digits.images, digits.labels
        counts = np.bincount(labels, minlength=10)
        splits[name] = {
            "count": len(digits),
            "image_shape": list(images.shape[1:]),
            "dtype": str(images.dtype),
            "pixel_min": images.min().item(),
            "pixel_max": images.max().item(),
            "label_min": int(labels.min()),
            "label_max": int(labels.max()),
            "class_counts": counts.tolist(),
            "balance": float(counts.max() / counts.min()) if counts.min() else math.inf,
            "empty_images": int((~images.reshape(len(images), -1).any(axis=1)).sum()),
            "duplicate_images": len(hashes[name]) - len(set(hashes[name])),
        }
    shared = {}
    for first, second in itertools.combinations(digits_by_split, 2):
        seen = set(hashes[first])
        shared[f"{first}/{second}"] = sum(digest in seen for digest in hashes[second])
    return {"splits": splits, "shared": shared}
