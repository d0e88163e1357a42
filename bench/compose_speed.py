"""Throughput bench: images of 6-digit numbers written to disk (PNG + labels.csv) per second.

Runs ``numgen.export.export_dataset`` — the code behind ``numgen dataset`` — with 1 and with 2
worker processes, into a folder on the working disk and into one on a RAM disk (tmpfs, when there
is one), and times the pieces apart:

- ``images_per_s``: images over the whole call, worker start-up and labels.csv included;
- ``steady_images_per_s``: images between the first and the last finished chunk (start-up left
  out), what a long export approaches;
- ``digits_per_s``: digits decoded per second, the export's images/s times 6; and the decoder
  alone on one thread (batches of 1,536 digits, no layout or PNG);
- ``create_us``: microseconds to create and write one 1.8 kB file in that folder, the floor the
  file system puts under every image.

Writes ``bench/results/compose_speed.json`` and ``.md``. Run it under the shared CPU lock:

    flock /tmp/numgen-cpu.lock .venv/bin/python bench/compose_speed.py --model cvae
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


def decoder_rate(model, seconds: float = 5.0, batch: int = 1536) -> float:
    """Digits per second from ``generate.decode`` alone, on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    z = generate.draw_styles(model, batch, seed=0, temperature=1.0)
    labels = np.arange(batch) % 10
    generate.decode(model, z, labels)  # warm-up
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        generate.decode(model, z, labels)
        done += batch
    rate = done / (time.perf_counter() - started)
    torch.set_num_threads(threads)
    return rate


def create_latency(folder: Path, files: int = 2000) -> float:
    """Microseconds to create, write (1,800 bytes) and close one new file in ``folder``."""
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        started = time.perf_counter()
        for i in range(files):
            Path(tmp, f"{i}.png").write_bytes(bytes(1800))
        return (time.perf_counter() - started) / files * 1e6


def export_rate(model, model_name: str, count: int, workers: int, folder: Path) -> dict:
    """Time one export of ``count`` 6-digit images with ``workers`` processes into ``folder``."""
    stamps: list[tuple[float, int]] = []
    config = export.ExportConfig(count, LENGTH, LENGTH, seed=0, model=model_name)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        started = time.perf_counter()
        summary = export.export_dataset(
            tmp, config, model, workers=workers,
            on_progress=lambda done, _: stamps.append((time.perf_counter(), done)),
        )  # fmt: skip
        seconds = time.perf_counter() - started
        images = Path(tmp) / export.IMAGES_DIR
        png_bytes = sum(p.stat().st_size for p in images.iterdir())
    (t0, n0), (t1, n1) = stamps[0], stamps[-1]
    return {
        "workers": workers,
        "images": count,
        "seconds": seconds,
        "images_per_s": count / seconds,
        "steady_images_per_s": (n1 - n0) / (t1 - t0),
        "digits_per_s": count * LENGTH / seconds,
        "png_bytes_per_image": png_bytes / count,
        "labels_digits": summary["digits"],
    }


def markdown(figures: dict) -> str:
    rows = [
        f"| {r['folder']} | {r['workers']} | {r['images']:,} | {r['seconds']:.1f} | "
        f"{r['images_per_s']:,.0f} | {r['steady_images_per_s']:,.0f} | {r['digits_per_s']:,.0f} | "
        f"{r['png_bytes_per_image']:.0f} |"
        for r in figures["exports"]
    ]
    creates = ", ".join(f"{f}: {us:,.0f} µs" for f, us in figures["create_us"].items())
    return "\n".join(
        [
            f"# Writing 6-digit number images with `{figures['model']}`",
            "",
            f"Measured {figures['date']}, under the shared CPU lock (other developers' jobs "
            "outside the lock may still have run beside it).",
            machine_line(figures),
            "",
            "`numgen.export.export_dataset` (= `numgen dataset --length 6`): PNG files written "
            "atomically plus labels.csv.",
            "",
            "| folder | workers | images | seconds | images/s | steady images/s | digits/s | "
            "PNG bytes |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            "images/s counts the whole call (worker start-up included); steady images/s leaves "
            "out the start-up (first to last finished chunk). Exports under "
            f"{export.POOL_MIN_IMAGES:,} images run in one process whatever the workers.",
            "",
            f"Creating one small file (the floor under every image): {creates}.",
            "",
            f"Decoder alone, one thread: **{figures['decoder_digits_per_s']:,.0f} digits/s**.",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cvae")
    parser.add_argument("--count", type=int, default=50_000)
    parser.add_argument("--out", default=str(RESULTS / "compose_speed"))
    args = parser.parse_args()
    # The disk the repository is on (run from its root), and a RAM disk when there is one.
    folders = {"repository disk": Path.cwd()}
    if Path("/dev/shm").is_dir():
        folders["/dev/shm"] = Path("/dev/shm")
    model = load(args.model)
    figures = {
        "model": args.model,
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "command": command(),
        "load_average": load_average(),
        "decoder_digits_per_s": decoder_rate(model),
        "create_us": {name: create_latency(folder) for name, folder in folders.items()},
        "exports": [
            {"folder": name, **export_rate(model, args.model, args.count, workers, folder)}
            for name, folder in folders.items()
            for workers in (1, 2)
        ],
    }
    figures["load_average"] = [figures["load_average"], load_average()]
    write_results(args.out, figures, markdown(figures))
    print(markdown(figures))


if __name__ == "__main__":
    main()
