"""Labelled datasets of handwritten numbers for OCR: ``DIR/images/*.png`` + ``DIR/labels.csv``.

Image ``i`` is fixed by ``(seed, i)`` alone: its text, style and jitter come from a random
generator seeded with that pair, and images are decoded in fixed chunks of ``CHUNK`` with one
thread each, so the same seed gives the same bytes whatever the number of workers.

Nothing half-written is left behind: each PNG is written to a temporary name and renamed, and
``labels.csv`` is written (atomically) only when every image exists. ``export.json`` records the
options, so an interrupted export continues with ``resume=True``, skipping the images on disk.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import re
import signal
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from numgen import __version__
from numgen.compose import (
    DIGITS,
    INKS,
    MAX_DIGITS,
    ComposeError,
    Layout,
    check_model,
    draw_layout,
    render,
    to_pixels,
)
from numgen.config import check_fields, read_json
from numgen.hub import atomic_write, load, place, write_json
from numgen.models import Generator, build_model, config_from_dict

log = logging.getLogger(__name__)

CHUNK = 256  # images decoded together; part of the recipe, so it never depends on the workers
IMAGES_DIR = "images"
LABELS_FILE = "labels.csv"
MANIFEST_FILE = "export.json"
# Starting a worker process (a fresh Python importing torch) takes seconds, in which one process
# writes thousands of images: smaller exports run in the calling process, whatever ``workers``.
POOL_MIN_IMAGES = 20_000
PNG_LEVEL = 1  # zlib level: 1 is about twice as fast as zlib's default 6 and ~5% larger here


@dataclass(frozen=True)
class ExportConfig:
    """What to export; saved as ``export.json`` so an interrupted export can be continued."""

    count: int
    min_length: int = 4
    max_length: int = 4
    alphabet: str = DIGITS
    seed: int = 0
    height: int = 28
    ink: str = "light"
    model: str = "cvae"  # the bundled name or model directory the images come from

    def __post_init__(self) -> None:
        check_fields(self)
        if not 1 <= self.count <= 100_000_000:
            raise ComposeError(f"count={self.count}: choose between 1 and 100,000,000 images")
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

    def file_name(self, index: int) -> str:
        """Image ``index``'s file name, zero-padded so names sort in the order they were made."""
        return f"{index:0{max(6, len(str(self.count - 1)))}d}.png"


def parse_length(text: str) -> tuple[int, int]:
    """ "4" -> (4, 4); "3-8" -> (3, 8); anything else -> a ComposeError."""
    match = re.fullmatch(r"(\d+)(?:-(\d+))?", text.strip())
    if not match:
        raise ComposeError(f"length {text!r}: give a number of digits (4) or a range (3-8)")
    low, high = int(match[1]), int(match[2] or match[1])
    if not 1 <= low <= high <= MAX_DIGITS:
        raise ComposeError(f"length {text!r}: lengths must lie in 1-{MAX_DIGITS}, low first")
    return low, high


def plan(
    config: ExportConfig, index: int, style_dim: int, temperature: float
) -> tuple[str, np.ndarray, Layout, np.ndarray]:
    """Image ``index``'s text, style ``(style_dim,)``, jitter and per-digit seeds, from
    ``(seed, index)`` alone."""
    rng = np.random.default_rng([config.seed, index])
    u = rng.random(config.max_length + 1)  # the length, then the digits
    length = config.min_length + int(u[0] * (config.max_length - config.min_length + 1))
    text = "".join(config.alphabet[int(k)] for k in u[1 : length + 1] * len(config.alphabet))
    style = rng.standard_normal(style_dim, dtype=np.float32) * np.float32(temperature)
    layout = draw_layout(rng, length)
    return text, style, layout, rng.integers(0, 2**62, size=length, dtype=np.int64)


def png_bytes(pixels: np.ndarray, level: int = PNG_LEVEL) -> bytes:
    """A grey image, uint8 ``(H, W)``, as the bytes of an 8-bit greyscale PNG file.

    The PNG format (https://www.w3.org/TR/png/) is a signature and three chunks: IHDR (size and
    pixel format), IDAT (the rows, each led by its filter type — 0, none — then zlib-compressed)
    and IEND. Written directly, it costs a third of what Pillow's encoder spends on these small
    images, which is most of an export's time after decoding.
    """
    height, width = pixels.shape
    rows = np.zeros((height, width + 1), dtype=np.uint8)
    rows[:, 1:] = pixels

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey, no interlace
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows.tobytes(), level))
        + chunk(b"IEND", b"")
    )


def chunk_indices(config: ExportConfig, chunk: int) -> range:
    """The image indices of chunk number ``chunk``."""
    return range(chunk * CHUNK, min((chunk + 1) * CHUNK, config.count))


def save_file(path: str, data: bytes) -> None:
    """Write ``data`` to a temporary name beside ``path``, then rename it onto ``path``.

    The same all-or-nothing write as :func:`numgen.hub.atomic_write`, without its per-call
    ``mkdir`` and random temporary name: an export owns its folder and writes each name once, and
    this costs 40 µs a file on a RAM disk where ``atomic_write`` costs 200 µs.
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


def write_chunk(model: Generator, config: ExportConfig, chunk: int, out_dir: Path) -> list[str]:
    """Decode chunk ``chunk`` in one batch and save its images not yet on disk; returns the texts."""
    plans = [
        plan(config, i, model.style_dim, model.temperature) for i in chunk_indices(config, chunk)
    ]
    texts = [text for text, _, _, _ in plans]
    styles = np.stack([style for _, style, _, _ in plans])
    seeds = np.concatenate([seeds for _, _, _, seeds in plans])
    canvases = render(model, texts, styles, [layout for _, _, layout, _ in plans], seeds)
    images = str(out_dir / IMAGES_DIR)  # plain strings: pathlib costs more than the rest here
    for index, (canvas, _) in zip(chunk_indices(config, chunk), canvases, strict=True):
        path = os.path.join(images, config.file_name(index))
        if os.path.exists(path):  # finished by an earlier, interrupted run: the same bytes
            continue
        save_file(path, png_bytes(to_pixels(canvas, config.height, config.ink)))
    return texts


# --- workers -------------------------------------------------------------------------------------

_worker_model: Generator | None = None  # each worker process loads the model once


def _start_worker(config: dict, weights: dict[str, np.ndarray]) -> None:
    global _worker_model
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    torch.set_num_threads(1)  # one thread per process: the workers share the cores
    model = build_model(config_from_dict(config))
    model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    _worker_model = place(model, "cpu").eval()


def _worker_chunk(config: ExportConfig, chunk: int, out_dir: Path) -> list[str]:
    assert _worker_model is not None, "the worker was started without a model"
    return write_chunk(_worker_model, config, chunk, out_dir)


@contextmanager
def _one_thread() -> Iterator[None]:
    """Decode on one thread, as every worker does, so the bytes never depend on the workers."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def run_chunks(
    model: Generator, config: ExportConfig, chunks: list[int], out_dir: Path, workers: int,
    on_chunk: Callable[[int], None],
) -> dict[int, list[str]]:  # fmt: skip
    """Write ``chunks`` in this process (1 worker, or a small export) or a process pool, calling
    ``on_chunk(chunk)`` after each; returns each chunk's texts."""
    results: dict[int, list[str]] = {}
    if workers == 1 or len(chunks) * CHUNK < POOL_MIN_IMAGES:
        with _one_thread():
            for chunk in chunks:
                results[chunk] = write_chunk(model, config, chunk, out_dir)
                on_chunk(chunk)
        return results
    weights = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    with ProcessPoolExecutor(
        workers, multiprocessing.get_context("spawn"),  # fork is unsafe once torch has threads
        initializer=_start_worker, initargs=(model.config.to_dict(), weights),
    ) as pool:  # fmt: skip
        futures = {pool.submit(_worker_chunk, config, chunk, out_dir): chunk for chunk in chunks}
        try:
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                on_chunk(futures[future])
        except BaseException:  # Ctrl-C or a failure: finish the chunks begun, start no more
            pool.shutdown(cancel_futures=True)
            raise
    return results


# --- the export ----------------------------------------------------------------------------------


def prepare(out_dir: Path, config: ExportConfig, overwrite: bool, resume: bool) -> None:
    """Check ``out_dir`` may be written, clear what must go, and record the options."""
    manifest = out_dir / MANIFEST_FILE
    if resume:
        if not manifest.is_file():
            raise ComposeError(f"{out_dir}: nothing to resume (no {MANIFEST_FILE})")
        saved = read_json(manifest)
        saved.pop("numgen_version", None)
        if saved != asdict(config):
            raise ComposeError(
                f"{out_dir} was started with other options ({saved}); repeat them to resume"
            )
        for tmp in (out_dir / IMAGES_DIR).glob(".*.tmp"):  # left by the interrupted run
            tmp.unlink()
        return
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise ComposeError(
                f"{out_dir} is not empty: choose another folder, or add --overwrite to replace "
                "it (or --resume to continue an interrupted export)"
            )
        # remove only what an export writes, never a user's other files
        for path in (out_dir / IMAGES_DIR).glob("*.png"):
            path.unlink()
        for path in (out_dir / IMAGES_DIR).glob(".*.tmp"):
            path.unlink()
        (out_dir / LABELS_FILE).unlink(missing_ok=True)
    write_json(manifest, {**asdict(config), "numgen_version": __version__})


def export_dataset(
    out_dir: str | Path, config: ExportConfig, model: Generator | None = None, workers: int = 2,
    overwrite: bool = False, resume: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict:  # fmt: skip
    """Write ``config.count`` number images and their labels into ``out_dir``.

    ``model`` defaults to ``load(config.model)``. ``on_progress(done, total)`` follows the images.
    Returns a summary: ``{"out", "images", "decoded", "digits", "seconds", "images_per_s"}``:
    ``decoded`` counts the images this call made (a resumed export skips those on disk),
    ``digits`` the digits of all ``images``, ``images_per_s`` is ``decoded / seconds``.
    """
    out_dir = Path(out_dir)
    if workers < 1:
        raise ComposeError(f"workers={workers}: use at least 1")
    model = check_model(model if model is not None else load(config.model))
    prepare(out_dir, config, overwrite, resume)
    images = out_dir / IMAGES_DIR
    images.mkdir(parents=True, exist_ok=True)
    chunks = range(-(-config.count // CHUNK))
    on_disk = {c for c in chunks
               if all((images / config.file_name(i)).exists() for i in chunk_indices(config, c))}  # fmt: skip
    done = sum(len(chunk_indices(config, c)) for c in on_disk)

    def on_chunk(chunk: int) -> None:
        nonlocal done
        done += len(chunk_indices(config, chunk))
        if on_progress:
            on_progress(done, config.count)

    started = time.perf_counter()
    todo = [c for c in chunks if c not in on_disk]
    texts = run_chunks(model, config, todo, out_dir, workers, on_chunk)
    seconds = time.perf_counter() - started
    for chunk in on_disk:  # their texts, without decoding anything
        texts[chunk] = [plan(config, i, 1, 1.0)[0] for i in chunk_indices(config, chunk)]
    rows = [
        f"{IMAGES_DIR}/{config.file_name(i)},{text}\n"
        for chunk in chunks
        for i, text in zip(chunk_indices(config, chunk), texts[chunk], strict=True)
    ]
    atomic_write(out_dir / LABELS_FILE, lambda tmp: tmp.write_text("file,text\n" + "".join(rows)))
    decoded = config.count - sum(len(chunk_indices(config, c)) for c in on_disk)
    return {
        "out": str(out_dir),
        "images": config.count,
        "decoded": decoded,
        "digits": sum(len(text) for chunk in chunks for text in texts[chunk]),
        "seconds": seconds,
        "images_per_s": decoded / seconds if seconds > 0 else float("inf"),
    }
