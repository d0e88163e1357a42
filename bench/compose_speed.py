"""Throughput bench: images of 6-digit numbers written by ``numgen dataset`` per second, per format.

Runs ``numgen.export.export_dataset`` (the code behind ``numgen dataset --length 6``) with the
bundled cvae into a folder on the working disk, for each format, and times:

- ``images_per_s``: images over the whole call (worker start-up and the dataset card included);
- ``steady_images_per_s``: images between the first and the last finished shard (start-up left
  out), what a long export approaches;
- ``bytes_per_image``: the dataset's size on disk over its images.

The machine is shared with other developers, so absolute rates drift with their load. Two
figures measured in the same run put the rates in proportion: the decoder alone on one thread
(digits/s: the ceiling of an export is twice that over 6 with 2 cores) and the machine's GEMM
rate (GFLOP/s, one thread, 512×512 float32). Writes ``bench/results/compose_speed.json`` and
``.md``. Run it under the shared CPU lock, from the repository root:

    flock /tmp/numgen-cpu.lock .venv/bin/python bench/compose_speed.py
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common import RESULTS, command, load_average, machine, machine_line, write_results
from numgen import export, generate
from numgen.hub import load

LENGTH = 6
# (format, png zlib level, workers): parquet stores its PNGs (level 0) and compresses the column
RUNS = [("png", 1, 2), ("webdataset", 1, 2), ("webdataset", 0, 2), ("parquet", 0, 2),
        ("parquet", 0, 1)]  # fmt: skip


def decoder_rate(model, seconds: float = 5.0, batch: int = 1536) -> float:
    """Digits per second from ``model.draw`` alone, on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    z = np.random.default_rng(0).standard_normal((batch, model.style_dim), dtype=np.float32)
    labels = np.arange(batch) % 10
    seeds = np.arange(batch, dtype=np.int64)
    generate.draw(model, z, labels, seeds)  # warm-up
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        generate.draw(model, z, labels, seeds)
        done += batch
    rate = done / (time.perf_counter() - started)
    torch.set_num_threads(threads)
    return rate


def gemm_rate(seconds: float = 3.0, n: int = 512) -> float:
    """GFLOP/s of float32 matrix products n×n on one thread: the machine's speed right now."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    a, b = torch.randn(n, n), torch.randn(n, n)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        a @ b
        done += 1
    rate = done * 2 * n**3 / (time.perf_counter() - started) / 1e9
    torch.set_num_threads(threads)
    return rate


def export_rate(model, model_name: str, count: int, fmt: str, level: int, workers: int) -> dict:
    """Time one export of ``count`` 6-digit images in a temporary folder on the working disk."""
    stamps: list[tuple[float, int]] = []
    config = export.ExportConfig(
        count, LENGTH, LENGTH, seed=0, model=model_name, format=fmt, png_level=level
    )
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        started = time.perf_counter()
        summary = export.export_dataset(
            tmp, config, model, workers=workers,
            on_progress=lambda done, _: stamps.append((time.perf_counter(), done)),
        )  # fmt: skip
        seconds = time.perf_counter() - started
        size = sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file())
    (t0, n0), (t1, n1) = stamps[0], stamps[-1]
    return {
        "format": fmt, "png_level": level, "workers": workers, "images": count,
        "seconds": seconds, "images_per_s": count / seconds,
        "steady_images_per_s": (n1 - n0) / (t1 - t0) if t1 > t0 else None,
        "bytes_per_image": size / count, "digits": summary["digits"],
    }  # fmt: skip


def markdown(figures: dict) -> str:
    rows = [
        f"| {r['format']} | {r['png_level']} | {r['workers']} | {r['images']:,} | "
        f"{r['seconds']:.1f} | **{r['images_per_s']:,.0f}** | "
        f"{r['steady_images_per_s'] or 0:,.0f} | {r['bytes_per_image']:,.0f} |"
        for r in figures["exports"]
    ]
    ceiling = 2 * figures["decoder_digits_per_s"] / LENGTH
    return "\n".join(
        [
            f"# Writing 6-digit number images with `{figures['model']}`",
            "",
            f"Measured {figures['date']}, under the shared CPU lock (other developers' jobs "
            "outside the lock may still have run beside it), so read the rates beside the "
            "same-run reference figures below.",
            machine_line(figures),
            "",
            "`numgen dataset --length 6 --format F --png-level L --workers W` "
            f"(`numgen.export.export_dataset`), shards of {export.ExportConfig(1).shard_size:,} "
            "images, into a folder on the repository disk:",
            "",
            "| format | PNG level | workers | images | seconds | images/s | steady images/s | "
            "bytes/image |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            "images/s counts the whole call (worker start-up and the dataset card included); "
            "steady images/s leaves out the start-up (first to last finished shard). PNG level 0 "
            "stores the pixels; parquet then compresses the image column with zstd, which packs "
            "the stored PNGs tighter than zlib level 1 packs each one.",
            "",
            "Same-run reference figures: the decoder alone, one thread, "
            f"**{figures['decoder_digits_per_s']:,.0f} digits/s** (so 2 cores cannot write more "
            f"than ~{ceiling:,.0f} six-digit numbers/s); float32 GEMM 512×512 on one thread, "
            f"{figures['gemm_gflops']:.1f} GFLOP/s.",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cvae")
    parser.add_argument("--count", type=int, default=60_000)
    parser.add_argument("--out", default=str(RESULTS / "compose_speed"))
    args = parser.parse_args()
    model = load(args.model)
    figures = {
        "model": args.model,
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "command": command(),
        "load_average": load_average(),
        "decoder_digits_per_s": decoder_rate(model),
        "gemm_gflops": gemm_rate(),
        "exports": [
            export_rate(model, args.model, args.count, fmt, level, workers)
            for fmt, level, workers in RUNS
        ],
    }
    figures["load_average"] = [figures["load_average"], load_average()]
    write_results(args.out, figures, markdown(figures))
    print(markdown(figures))


if __name__ == "__main__":
    main()
