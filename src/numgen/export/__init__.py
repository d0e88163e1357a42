"""Labelled datasets of handwritten numbers that ML pipelines load directly.

``export_dataset(out, ExportConfig(count=..., format="webdataset"))`` writes WebDataset tar
shards, Parquet shards, an ImageFolder (images + metadata.jsonl) or plain PNGs + labels.csv, each
with a Hugging Face dataset card (README.md), and per-row metadata: the text as a string, a box
per digit, the seeds that redraw the image, the split.

Image ``i`` is fixed by ``(seed, i)`` alone (:mod:`numgen.export.recipe`), and a shard — a fixed
range of images — is made whole by one worker on one thread (:mod:`numgen.export.shards`), so
the same options give the same bytes for any number of workers, machines or engines. Every file
is written atomically; ``resume`` makes the shards not yet done; ``num_shards``/``shard_index``
let a scheduler split one export over machines.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

from numgen import __version__
from numgen.compose import ComposeError
from numgen.config import read_json
from numgen.export.card import CARD_FILE, PICTURE_FILE, write_card
from numgen.export.formats import IMAGES_DIR, LABELS_FILE, METADATA_FILE, write_listing
from numgen.export.recipe import FORMATS, KINDS, ExportConfig, parse_length, parse_split, plan
from numgen.export.render import CHUNK, png_bytes, render_rows
from numgen.export.shards import (
    POOL_MIN_IMAGES,
    STATE_DIR,
    drawing_model,
    read_state,
    run_local,
    run_ray,
)
from numgen.export.stream import NumberStream
from numgen.files import write_json

MANIFEST_FILE = "export.json"
ENGINES = ("local", "ray")

__all__ = [
    "CHUNK", "ENGINES", "FORMATS", "IMAGES_DIR", "KINDS", "LABELS_FILE", "MANIFEST_FILE", "METADATA_FILE",
    "POOL_MIN_IMAGES", "ExportConfig", "export_dataset", "parse_length", "parse_split", "plan",
    "NumberStream", "png_bytes", "render_rows",
]  # fmt: skip


def remove_export(out_dir: Path) -> None:
    """Delete what an export writes in ``out_dir``, never a user's other files."""
    for pattern in ("*.tar", "*/*.tar", "data/*.parquet", "images/*.png", "*/images/*.png",
                    LABELS_FILE, METADATA_FILE, f"*/{METADATA_FILE}", CARD_FILE, PICTURE_FILE,
                    f"{STATE_DIR}/*", ".*.tmp", "*/.*.tmp", "*/*/.*.tmp"):  # fmt: skip
        for path in out_dir.glob(pattern):
            if path.is_file():
                path.unlink()
    for folder in sorted(out_dir.glob("**/"), key=lambda p: -len(p.parts)):  # emptied folders
        if folder != out_dir and not any(folder.iterdir()):
            folder.rmdir()


def prepare(out_dir: Path, config: ExportConfig, overwrite: bool, resume: bool, join: bool) -> None:
    """Check ``out_dir`` may be written, clear what must go, and record the options.

    ``resume``: continue the export already there; ``join``: add shards to it, or start it
    (several machines each making some shards of one export)."""
    manifest = out_dir / MANIFEST_FILE
    saved = read_json(manifest) if manifest.is_file() else None
    if saved is not None:
        saved.pop("numgen_version", None)
        if (resume or join) and not overwrite:
            if saved != config.to_dict():
                changed = sorted(k for k in saved.keys() | config.to_dict().keys()
                                 if saved.get(k) != config.to_dict().get(k))  # fmt: skip
                raise ComposeError(
                    f"{out_dir} holds an export made with other options ({', '.join(changed)} "
                    f"differ: {', '.join(f'{k}={saved.get(k)!r}' for k in changed)}); repeat "
                    "them to continue it, or add --overwrite to replace it"
                )
            for tmp in out_dir.glob("**/.*.tmp"):  # left by the interrupted run
                tmp.unlink()
            return
        if not overwrite:
            raise ComposeError(
                f"{out_dir} already holds a {saved.get('format', 'png')} export: add --resume to "
                "continue it, --overwrite to replace it, or choose another folder"
            )
    elif resume:
        raise ComposeError(f"{out_dir}: nothing to resume (no {MANIFEST_FILE})")
    elif out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise ComposeError(
            f"{out_dir} is not empty: choose another folder, or add --overwrite to replace an "
            "export there (only an export's own files are removed)"
        )
    if out_dir.exists():
        remove_export(out_dir)
    write_json(manifest, {**config.to_dict(), "numgen_version": __version__})


# PNG bytes per pixel of numgen's numbers, at the least: measured 0.22 (height 1024) to 0.56
# (height 28) at --png-level 1; stored (level 0) a byte a pixel. Width: 0.73 heights a digit.
PNG_BYTES_PER_PIXEL = 0.15
WIDTH_PER_DIGIT = 0.7


def check_disk(out_dir: Path, config: ExportConfig, images: int) -> None:
    """Refuse, before any work, an export of ``images`` images that would not fit in the free
    space of ``out_dir``'s disk (a low estimate: only exports that surely cannot fit)."""
    digits = (config.min_length + config.max_length) / 2
    per_pixel = 1.0 if config.png_level == 0 else PNG_BYTES_PER_PIXEL
    needed = images * config.height**2 * WIDTH_PER_DIGIT * digits * per_pixel
    existing = out_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if needed > free:
        raise ComposeError(
            f"{images:,} images of height {config.height} need about {needed / 1e9:,.1f} GB; "
            f"{existing} has {free / 1e9:,.1f} GB free: choose a smaller --count or --height, "
            "or another --out"
        )


def finish(out_dir: Path, model, config: ExportConfig, states: list[dict]) -> None:
    """Once every shard is done: the listing (png, imagefolder) and the dataset card."""
    states = sorted(states, key=lambda s: s["shard"])
    write_listing(out_dir, config, [meta for s in states for meta in s["listing"]])
    sample = render_rows(model, config, plan(config, range(min(8, config.count))))
    write_card(out_dir, config, states, sample)


def export_dataset(
    out_dir: str | Path, config: ExportConfig, model=None, workers: int = 2,
    overwrite: bool = False, resume: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
    num_shards: int = 1, shard_index: int = 0, engine: str = "local",
    ray_address: str | None = None,
) -> dict:  # fmt: skip
    """Write the shards of ``config`` that are this run's (shard ``s`` with ``s % num_shards ==
    shard_index``) into ``out_dir``; when all shards of the export are done, the listing and the
    dataset card too.

    ``model`` defaults to ``load(config.model)``. ``on_progress(done, total)`` follows this run's
    images. Returns a summary: ``{"out", "images", "decoded", "digits", "seconds",
    "images_per_s", "shards", "complete"}``: ``images`` counts this run's images, ``decoded``
    those it made (a resumed run skips finished shards), ``complete`` whether every shard of
    the export is now done.
    """
    out_dir = Path(out_dir)
    if workers < 1:
        raise ComposeError(f"workers={workers}: use at least 1")
    if engine not in ENGINES:
        raise ComposeError(f"engine={engine!r}: choose one of {', '.join(ENGINES)}")
    if not 1 <= num_shards <= config.num_shards:
        raise ComposeError(
            f"num_shards={num_shards}: this export has {config.num_shards} shards of "
            f"{config.shard_size:,} images; choose 1 to {config.num_shards}"
        )
    if not 0 <= shard_index < num_shards:
        raise ComposeError(f"shard_index={shard_index}: choose 0 to {num_shards - 1}")
    model = drawing_model(config, model)
    mine = [s for s in range(config.num_shards) if s % num_shards == shard_index]
    pending = mine if overwrite else [s for s in mine if read_state(out_dir, s) is None]
    check_disk(out_dir, config, sum(len(config.shard_indices(s)) for s in pending))
    prepare(out_dir, config, overwrite, resume, join=num_shards > 1)
    states = {s: state for s in mine if (state := read_state(out_dir, s)) is not None}
    todo = [s for s in mine if s not in states]
    total = sum(len(config.shard_indices(s)) for s in mine)
    done = total - sum(len(config.shard_indices(s)) for s in todo)

    def on_shard(state: dict) -> None:
        nonlocal done
        states[state["shard"]] = state
        done += state["rows"]
        if on_progress:
            on_progress(done, total)

    started = time.perf_counter()
    if engine == "ray" and todo:
        run_ray(model, config, todo, out_dir, workers, ray_address, on_shard)
    else:
        run_local(model, config, todo, out_dir, workers, on_shard)
    seconds = time.perf_counter() - started
    others = [read_state(out_dir, s) for s in range(config.num_shards) if s not in states]
    complete = all(s is not None for s in others)
    if complete:
        finish(out_dir, model, config, [*states.values(), *others])
    decoded = sum(len(config.shard_indices(s)) for s in todo)
    return {
        "out": str(out_dir), "images": total, "decoded": decoded,
        "digits": sum(sum(s["digits"]) for s in states.values()), "seconds": seconds,
        "images_per_s": decoded / seconds if seconds > 0 else float("inf"),
        "shards": len(mine), "complete": complete,
    }  # fmt: skip
