"""Start-up: what `import numgen` costs beyond `import torch`, which heavy libraries it loads,
and how long `numgen write 2026` takes as a whole process (issue 8 asks < 1 s) beside a process
that only imports torch — for this tree and, in the same run, for an earlier commit (default:
312f934, before numgen moved matplotlib, scipy, scikit-learn, mlxtend and the web stack out of its
import path).

    python bench/import_time.py [--baseline REF] [--repeats N]

Each measurement is a fresh interpreter: ``import torch`` is timed, then ``import numgen`` with its
first use of ``numgen.Writer`` (which loads the writing modules since they load lazily); then
whole processes are timed from start to exit: ``python -c "import torch"`` and the CLI writing
2026 with the bundled default writer. The baseline's ``src/`` is taken from git (``git archive``)
and put first on ``PYTHONPATH``; it needs the libraries it imported then to be installed.
Writes bench/results/import_time.{md,json}.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from common import REPO, command, load_average, machine, machine_line, write_results

HEAVY = ("matplotlib", "scipy", "sklearn", "pandas", "mlxtend", "fastapi", "uvicorn")
PROBE = f"""
import json, sys, time
start = time.perf_counter(); import torch; middle = time.perf_counter()
import numgen; numgen.Writer; end = time.perf_counter()
print(json.dumps({{"torch_s": middle - start, "numgen_s": end - middle,
                  "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
"""
WRITE = "import sys; from numgen.cli import run; sys.argv[1:] = {args!r}; run()"


def process_seconds(argv: list[str], env: dict) -> float:
    """Wall-clock seconds of one whole process, start to exit (it must succeed)."""
    started = time.perf_counter()
    subprocess.run(argv, capture_output=True, env=env, check=True)
    return time.perf_counter() - started


def measure(src: Path | None, repeats: int) -> dict:
    """Median seconds over ``repeats`` fresh interpreters (numgen from ``src``, else installed)."""
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(src), env.get("PYTHONPATH", "")])
    runs = []
    for _ in range(repeats):
        done = subprocess.run(
            [sys.executable, "-c", PROBE], capture_output=True, text=True, env=env
        )
        if done.returncode != 0:
            return {"error": done.stderr.strip().splitlines()[-1]}
        runs.append(json.loads(done.stdout))
    with tempfile.TemporaryDirectory() as out:
        write = WRITE.format(args=["write", "2026", "--out", str(Path(out) / "2026.png")])
        torch_only = [process_seconds([sys.executable, "-c", "import torch"], env)
                      for _ in range(repeats)]  # fmt: skip
        writes = [process_seconds([sys.executable, "-c", write], env) for _ in range(repeats)]
    return {
        "torch_process_s": statistics.median(torch_only),
        "write_2026_process_s": statistics.median(writes),
        "write_2026_runs_s": [round(t, 3) for t in writes],
        "torch_s": statistics.median(r["torch_s"] for r in runs),
        "numgen_beyond_torch_s": statistics.median(r["numgen_s"] for r in runs),
        "numgen_runs_s": [round(r["numgen_s"], 3) for r in runs],
        "heavy_modules": runs[0]["heavy"],
    }


def source_at(ref: str, into: Path) -> Path:
    """The ``src/`` folder of commit ``ref``, unpacked into ``into``."""
    archive = subprocess.run(
        ["git", "archive", ref, "src"], cwd=REPO, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def markdown(figures: dict) -> str:
    lines = [
        "# Start-up: `import numgen` beyond `import torch`, heavy modules, `numgen write 2026`",
        "",
        machine_line(figures),
        f"Median of {figures['repeats']} fresh interpreters each; both versions measured one after "
        "the other in the same run. The last two columns time whole processes, start to exit: "
        "one that only imports torch, and `numgen write 2026` (the bundled default writer, one "
        "PNG); issue 8 asks < 1 s for the second.",
        "",
        "| version | import torch, s | import numgen beyond torch, s | heavy modules loaded "
        "| `python -c 'import torch'`, s | `numgen write 2026`, s |",
        "| --- | ---: | ---: | --- | ---: | ---: |",
    ]
    for name, r in figures["versions"].items():
        if "error" in r:
            lines.append(f"| {name} | — | — | could not import: {r['error']} | — | — |")
            continue
        lines.append(
            f"| {name} | {r['torch_s']:.2f} | {r['numgen_beyond_torch_s']:.2f} | "
            f"{', '.join(r['heavy_modules']) or 'none'} | {r['torch_process_s']:.2f} | "
            f"{r['write_2026_process_s']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="312f934")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    load_at_start = load_average()
    with tempfile.TemporaryDirectory() as tmp:
        versions = {
            f"{args.baseline} (before)": measure(source_at(args.baseline, Path(tmp)), args.repeats),
            "this tree": measure(REPO / "src", args.repeats),
        }
    figures = {
        "machine": machine(),
        "command": command(),
        "repeats": args.repeats,
        "versions": versions,
        "load_average": [load_at_start, load_average()],
    }
    write_results("import_time", figures, markdown(figures))
    print(markdown(figures))


if __name__ == "__main__":
    main()
