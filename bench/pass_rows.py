"""How many digits one network pass should take on this machine: each bundled generator's draw
and the legibility checker's reading, timed in passes of 16 to 2,048 rows, at fp32 and bf16.

    python bench/pass_rows.py [--digits 2048] [--repeats 5] [--out pass_rows]

On a CPU a wide pass is not a cheap pass: the convs' activations of 2,048 digits (16 channels ×
28² floats each, ~100 MB) overflow the caches, and the element-wise passes between the convs
(FiLM, SiLU, the skips) then run from memory. Each figure is ms per 1,000 digits, the best of
``--repeats`` timings of all ``--digits`` in passes of that many rows; "same bytes" says whether
the output equals the 2,048-row pass's exactly. Writes bench/results/pass_rows.{md,json} (or
where --out says).
"""

from __future__ import annotations

import argparse
import time

import torch

import common

ROWS = (16, 32, 64, 128, 256, 512, 1024, 2048)
MODELS = ("cvae", "flow", "onestep")


def best_ms(run, repeats: int) -> float:
    """The best of ``repeats`` timings of ``run()`` after one warm-up, in ms."""
    run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return 1000 * min(times)


def passes(fn, inputs: tuple[torch.Tensor, ...], rows: int) -> torch.Tensor:
    """``fn`` over ``inputs`` split into passes of ``rows``, concatenated."""
    parts = zip(*(x.split(rows) for x in inputs), strict=True)
    return torch.cat([fn(*part) for part in parts])


def sweep(name: str, fn, inputs: tuple, precision: str, repeats: int) -> list[dict]:
    """One row of figures per pass size for ``fn`` at ``precision``."""
    n = len(inputs[0])
    rows_out = []
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16"):
        reference = passes(fn, inputs, max(ROWS))
        for rows in ROWS:
            ms = best_ms(lambda rows=rows: passes(fn, inputs, rows), repeats)
            same = torch.equal(passes(fn, inputs, rows), reference)
            rows_out.append({"what": name, "precision": precision, "rows": rows,
                             "ms_per_1000": ms * 1000 / n, "same_bytes": same})  # fmt: skip
            print(name, precision, rows, f"{ms * 1000 / n:.1f} ms/1000", same, flush=True)
    return rows_out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--digits", type=int, default=2048, help="digits timed per measurement")
    parser.add_argument("--repeats", type=int, default=5, help="timings; the best counts")
    parser.add_argument("--out", default="pass_rows", help="results name or path")
    args = parser.parse_args()
    from numgen import generate, legibility
    from numgen.hub import load

    n = args.digits
    labels = torch.arange(n) % 10
    seeds = torch.as_tensor(generate.digit_seeds(0, n))
    load_at_start = common.load_average()
    figures = []
    for precision in ("fp32", "bf16"):
        for name in MODELS:
            model = load(name)
            styles = torch.as_tensor(generate.draw_styles(model, n, 0, temperature=1.0))
            draw = lambda y, s, k, model=model: model.draw(y, s, k)  # noqa: E731
            figures += sweep(name, draw, (labels, styles, seeds), precision, args.repeats)
        checker = legibility.bundled_checker("cpu").eval()
        images = torch.as_tensor(generate.draw(load("onestep"), styles.numpy(), labels)[:, None])
        figures += sweep("checker", checker, (images,), precision, args.repeats)
    results = {**common.context(load_at_start), "figures": figures}
    lines = [
        "# Rows per network pass",
        "",
        common.machine_line(results),
        "",
        "ms per 1,000 digits (best of the repeats), each network's pass over all digits in passes "
        "of that many rows; * marks output bytes that differ from the 2,048-row pass's.",
        "",
        "| what | precision | " + " | ".join(str(r) for r in ROWS) + " |",
        "| --- | --- | " + " | ".join("---:" for _ in ROWS) + " |",
    ]
    for what in (*MODELS, "checker"):
        for precision in ("fp32", "bf16"):
            cells = [
                f"{f['ms_per_1000']:.1f}" + ("" if f["same_bytes"] else "*")
                for f in figures
                if f["what"] == what and f["precision"] == precision
            ]
            lines.append(f"| {what} | {precision} | " + " | ".join(cells) + " |")
    fastest = {}
    for f in figures:
        key = (f["what"], f["precision"])
        if key not in fastest or f["ms_per_1000"] < fastest[key]["ms_per_1000"]:
            fastest[key] = f
    from numgen.models.sampling import CPU_PASS_ROWS

    lines += ["", f"numgen draws and reads on a CPU in passes of at most {CPU_PASS_ROWS} rows "
              "(`numgen.models.sampling.passes`). Fastest pass size: " + "; ".join(
        f"{what} {precision} {f['rows']}" for (what, precision), f in fastest.items()
    ) + "."]  # fmt: skip
    common.write_results(args.out, results, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
