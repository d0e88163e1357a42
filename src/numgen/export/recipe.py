"""What an export makes: its options (:class:`ExportConfig`), and each image's text, style and
jitter, fixed by ``(seed, index)`` alone.

A text is a digit string (kind ``integer``: ``length`` digits from ``alphabet``), a text of
another kind (a date, an amount ..., :mod:`numgen.patterns`) or line ``index % lines`` of a
file of texts (``texts_file``).

Every random number of image ``index`` is a hash of ``(seed, index, slot)`` (:func:`uniforms`):
its length, its digits, the jitter of each digit, each digit's own seed for ``model.draw`` and a
*style seed*, which draws the handwriting style exactly as ``numgen write --style-seed`` does
(rows sharing a style seed share a hand). Hashing, unlike a random generator per image, works on
a whole batch of images at once: a plan costs ~1 µs an image instead of ~90.
"""

from __future__ import annotations

import hashlib
import math
import re
import shlex
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from numgen import patterns
from numgen.compose import (
    DEFAULT_WRITER,
    DIGITS,
    INKS,
    MAX_DIGITS,
    ComposeError,
    check_text,
)
from numgen.config import check_fields
from numgen.generate import uniforms
from numgen.layout import TOUCHING, check_touching, hands, jitter, positions, touchable
from numgen.models import Generator
from numgen.models.sampling import Sampling, check_precision, check_sampling

FORMATS = ("webdataset", "parquet", "imagefolder", "png")
KINDS = ("integer", *patterns.KINDS)  # integer: digit strings of --length from --alphabet
GOLDEN = (math.sqrt(5) - 1) / 2  # splits: frac(index * GOLDEN) spreads evenly over [0, 1)
SEED_RANGE = 2**31  # style and jitter seeds lie in [0, SEED_RANGE)


@dataclass(frozen=True)
class ExportConfig:
    """What to export; saved as ``export.json`` so that an interrupted export, or one spread over
    machines (``num_shards``), continues with exactly the same recipe.

    ``split`` maps split names to fractions summing to 1, e.g. ``{"train": 0.9, "test": 0.1}``;
    ``shard_size`` images make one shard (one tar / parquet file per split, the unit of work and
    of ``resume``)."""

    count: int
    min_length: int = 4
    max_length: int = 4
    alphabet: str = DIGITS
    seed: int = 0
    height: int = 28
    ink: str = "light"
    model: str = DEFAULT_WRITER  # the bundled name or model directory the images come from
    format: str = "webdataset"
    shard_size: int = 5000
    split: dict[str, float] = field(default_factory=lambda: {"train": 1.0})
    png_level: int = 1  # zlib level of each PNG: 0 stores (fastest, ~2x larger), 9 packs tightest
    ode_steps: int | None = None  # flow models: the sampler's steps [None: the model's default]
    guidance: float | None = None  # flow models: guidance weight [None: the model's default]
    check: bool = True  # the model's legibility check (numgen.legibility), where it has one
    kind: str = "integer"  # what the texts are: digit strings, or one of numgen.patterns.KINDS
    texts_file: str | None = None  # a file of texts, one a line: row i writes line i % lines
    texts_sha256: str | None = None  # that file's digest (filled in when None)
    touching: float = TOUCHING  # mean share of neighbouring digits that touch (numgen.layout.Hand)
    precision: str = "fp32"  # of the drawing's network passes (numgen.models.sampling.PRECISIONS)

    def __post_init__(self) -> None:
        check_fields(self)  # types first: a count of 2.5 or "many" is named, not compared
        if self.kind not in KINDS:
            raise ComposeError(f"kind={self.kind!r}: choose one of {', '.join(KINDS)}")
        if self.texts_file is not None:
            if self.kind != "integer":
                raise ComposeError("give either a kind of text or a file of texts, not both")
            digest = file_digest(self.texts_file)
            object.__setattr__(self, "texts_sha256", self.texts_sha256 or digest)
            read_texts(self.texts_file, self.texts_sha256)  # every line checked before any work
        if not 1 <= self.count <= 1_000_000_000:
            raise ComposeError(f"count={self.count}: choose between 1 and 1,000,000,000 images")
        if not 1 <= self.min_length <= self.max_length <= MAX_DIGITS:
            raise ComposeError(
                f"length {self.min_length}-{self.max_length}: lengths must satisfy "
                f"1 <= min <= max <= {MAX_DIGITS}"
            )
        if not self.alphabet or set(self.alphabet) - set(DIGITS):
            raise ComposeError(f"alphabet={self.alphabet!r}: give some of the digits 0123456789")
        if self.ink not in INKS:
            raise ComposeError(f"ink={self.ink!r}: choose one of {', '.join(INKS)}")
        if not 8 <= self.height <= 1024:
            raise ComposeError(f"height={self.height}: choose between 8 and 1024 pixels")
        if self.format not in FORMATS:
            raise ComposeError(f"format={self.format!r}: choose one of {', '.join(FORMATS)}")
        if not 1 <= self.shard_size <= 1_000_000:
            raise ComposeError(f"shard_size={self.shard_size}: choose between 1 and 1,000,000")
        check_split(self.split)
        if not 0 <= self.png_level <= 9:
            raise ComposeError(f"png_level={self.png_level}: choose 0 (no compression) to 9")
        check_sampling(self.ode_steps, self.guidance, solver=None)  # before any model is loaded
        check_touching(self.touching)
        check_precision(self.precision)

    @property
    def num_shards(self) -> int:
        return -(-self.count // self.shard_size)

    def shard_indices(self, shard: int) -> range:
        """The image indices of shard ``shard``."""
        return range(shard * self.shard_size, min((shard + 1) * self.shard_size, self.count))

    def key(self, index: int) -> str:
        """Image ``index``'s name, zero-padded so that names sort in the order they were made."""
        return f"{index:0{max(6, len(str(self.count - 1)))}d}"

    def to_dict(self) -> dict:
        """The options, as ``export.json`` keeps them (the newer ones only when set, so that an
        export of digit strings records what it did before they came)."""
        options = asdict(self)
        newer = (("kind", "integer"), ("texts_file", None), ("texts_sha256", None),
                 ("precision", "fp32"))  # fmt: skip
        for key, default in newer:
            if options[key] == default:
                del options[key]
        return options

    def texts(self) -> tuple[str, ...] | None:
        """The texts of ``texts_file`` (None without one)."""
        return None if self.texts_file is None else read_texts(self.texts_file, self.texts_sha256)

    def sampling(self, model: Generator) -> Sampling:
        """How ``model`` draws this export's digits: its own sampling with this config's
        sampler options and check."""
        return model.sampling_with(
            steps=self.ode_steps, guidance=self.guidance, check=self.check, precision=self.precision
        )

    def command(self) -> str:
        """The ``numgen dataset`` command that makes this export (its output folder aside)."""
        length = (
            str(self.min_length)
            if self.min_length == self.max_length
            else f"{self.min_length}-{self.max_length}"
        )
        split = ",".join(f"{name}={share:g}" for name, share in self.split.items())
        options = {"count": self.count, "length": length, "alphabet": self.alphabet, "seed": self.seed,
                   "model": self.model, "height": self.height, "ink": self.ink, "touching": self.touching,
                   "format": self.format,
                   "split": split, "shard-size": self.shard_size, "png-level": self.png_level,
                   "ode-steps": self.ode_steps, "guidance": self.guidance,
                   "precision": None if self.precision == "fp32" else self.precision}  # fmt: skip
        if self.texts_file is not None:
            options = {"count": self.count, "texts": self.texts_file, **options}
            del options["length"], options["alphabet"]
        elif self.kind != "integer":
            options = {"count": self.count, "kind": self.kind, **options}
            del options["length"], options["alphabet"]
        options = {k: v for k, v in options.items() if v is not None}
        flags = [] if self.check else ["--no-check"]
        return shlex.join(
            ["numgen", "dataset", *(f"--{k}={v}" for k, v in options.items()), *flags]
        )


def file_digest(path: str) -> str:
    """The SHA-256 of the file at ``path``, or a ComposeError naming why it cannot be read."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError as err:
        raise ComposeError(f"{path}: cannot read the texts ({err.strerror or err})") from None


@lru_cache(maxsize=4)
def read_texts(path: str, sha256: str | None) -> tuple[str, ...]:
    """The texts in the file at ``path``, one a line (blank lines skipped, spaces around a text
    dropped), each checked as ``numgen write`` checks it; the file must still have ``sha256``."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise ComposeError(f"{path}: cannot read the texts ({err.strerror or err})") from None
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise ComposeError(f"{path} changed since this export began: restore it, or --overwrite")
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise ComposeError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    texts = []
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                texts.append(check_text(line.strip()))
            except ComposeError as err:
                raise ComposeError(f"{path} line {number}: {err}") from None
    if not texts:
        raise ComposeError(f"{path} holds no text: write one number a line, e.g. 02.12.2026")
    return tuple(texts)


def check_split(split: dict[str, float]) -> dict[str, float]:
    """The split itself if its names are plain words and its fractions positive, summing to 1."""
    for name, share in split.items():
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise ComposeError(f"split name {name!r}: use lower-case letters, digits and _")
        if not 0 < share <= 1:
            raise ComposeError(f"split {name}={share}: each share must lie in (0, 1]")
    if not split or abs(sum(split.values()) - 1) > 1e-6:
        raise ComposeError(f"split {split}: the shares must add up to 1, e.g. train=0.9,test=0.1")
    return split


def parse_split(text: str) -> dict[str, float]:
    """ "train=0.9,test=0.1" -> {"train": 0.9, "test": 0.1}; anything else -> a ComposeError."""
    split: dict[str, float] = {}
    for part in text.split(","):
        # a split's name becomes a folder and a Hugging Face split: letters, digits, _ and .
        match = re.fullmatch(r"\s*([A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*)\s*=\s*([0-9.]+)\s*", part)
        if not match:
            raise ComposeError(
                f"split {text!r}: give name=share pairs, e.g. train=0.9,test=0.1 (names of "
                "letters, digits and _)"
            )
        if match[1] in split:
            raise ComposeError(f"split {text!r}: {match[1]!r} is named twice")
        try:
            split[match[1]] = float(match[2])
        except ValueError:
            raise ComposeError(f"split {text!r}: {match[2]!r} is not a number") from None
    return check_split(split)


def parse_length(text: str) -> tuple[int, int]:
    """ "4" -> (4, 4); "3-8" -> (3, 8); anything else -> a ComposeError."""
    match = re.fullmatch(r"([0-9]+)(?:-([0-9]+))?", text.strip())  # not other scripts' digits
    if not match:
        raise ComposeError(f"length {text!r}: give a number of digits (4) or a range (3-8)")
    low, high = int(match[1]), int(match[2] or match[1])
    if not 1 <= low <= high <= MAX_DIGITS:
        raise ComposeError(f"length {text!r}: lengths must lie in 1-{MAX_DIGITS}, low first")
    return low, high


def split_of(config: ExportConfig, index: int) -> str:
    """The split image ``index`` belongs to: fixed by the index, with shares as close to the
    asked fractions as a low-discrepancy sequence gets (within a few images of any count)."""
    u, edge = (index * GOLDEN) % 1.0, 0.0
    for name, share in config.split.items():
        edge += share
        if u < edge:
            return name
    return name  # u just below 1 with shares summing to 1 - 1e-7


@dataclass(frozen=True)
class Batch:
    """The plans of images ``indices``: their texts and style seeds, and per digit (all numbers'
    digits in a row, ``D`` in all) the label, jitter and seed."""

    indices: range
    texts: list[str]
    style_seeds: np.ndarray  # (N,) int64
    scales: np.ndarray  # (D,) float32 size factors
    rises: np.ndarray  # (D,) int: pixels up
    gaps: np.ndarray  # (D,) int: blank columns before each digit (unused for a first digit)
    seeds: np.ndarray  # (D,) int64: each digit's seed for model.draw


def plan(config: ExportConfig, indices: range) -> Batch:
    """The texts and seeds of images ``indices``, each from ``(config.seed, index)`` alone."""
    if config.kind != "integer" or config.texts_file is not None:
        return plan_texts(config, indices)
    n_max = config.max_length
    u = uniforms(config.seed, np.arange(indices.start, indices.stop), 2 + 5 * n_max)
    lengths = config.min_length + (u[:, 0] * (n_max - config.min_length + 1)).astype(int)
    digits = (u[:, 2 : 2 + n_max] * len(config.alphabet)).astype(int)
    alphabet = np.frombuffer(config.alphabet.encode(), np.uint8)
    keep = np.arange(n_max)[None, :] < lengths[:, None]  # (N, n_max): the digits each number has
    chars = alphabet[digits].tobytes().decode()
    texts = [chars[i * n_max : i * n_max + n] for i, n in enumerate(lengths.tolist())]
    style_seeds = (u[:, 1] * SEED_RANGE).astype(np.int64)
    layout = u[:, 2 + n_max : 2 + 4 * n_max].reshape(-1, 3, n_max).transpose(1, 0, 2)[:, keep]
    seeds = (u[:, 2 + 4 * n_max :] * 2.0**63).astype(np.int64)
    return Batch(
        indices, texts, style_seeds, *jitter_rows(config, texts, style_seeds, layout), seeds[keep]
    )


def plan_texts(config: ExportConfig, indices: range) -> Batch:
    """:func:`plan` for texts of a kind or from a file: slot 1 draws the style seed, the next
    ``TEXT_SLOTS`` the text, then 4 slots per character its size, rise, gap and seed (so no
    slot depends on the lengths of other images' texts)."""
    index = np.arange(indices.start, indices.stop)
    base = 2 + patterns.TEXT_SLOTS
    head = uniforms(config.seed, index, base)
    lines = config.texts()
    if lines is None:
        texts = patterns.texts(config.kind, head[:, 2:])
    else:
        texts = [lines[i % len(lines)] for i in indices]
    lengths = np.array([len(t) for t in texts])
    n_max = int(lengths.max())
    u = uniforms(config.seed, index, base + 4 * n_max)[:, base:].reshape(len(index), n_max, 4)
    keep = np.arange(n_max)[None, :] < lengths[:, None]
    style_seeds = (head[:, 1] * SEED_RANGE).astype(np.int64)
    layout = u[:, :, :3].transpose(2, 0, 1)[:, keep]
    seeds = (u[:, :, 3] * 2.0**63).astype(np.int64)
    return Batch(
        indices, texts, style_seeds, *jitter_rows(config, texts, style_seeds, layout), seeds[keep]
    )


def jitter_rows(
    config: ExportConfig, texts: list[str], style_seeds: np.ndarray, u: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The size factors, rises and gaps of all characters of ``texts`` ``(D,)`` each, from their
    uniform numbers ``u`` ``(3, D)``, each number in the hand of its style seed (with the
    export's ``touching`` share)."""
    lengths = [len(text) for text in texts]
    return jitter(
        u, hands(style_seeds, config.touching), np.repeat(np.arange(len(texts)), lengths),
        positions(lengths), touchable("".join(texts)),
    )  # fmt: skip
