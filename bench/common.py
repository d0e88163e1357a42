"""What every bench script shares: where results go, and the lines that say on which machine, how
busy it was and with which command a figure was measured.

    from common import RESULTS, command, load_average, machine, machine_line, write_results

The machine numgen is developed on is shared with other jobs, so absolute times drift with load:
every results file records the 1-minute load average at the start and end of its run, and speed
figures are best read as ratios to something measured in the same run.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
REPO = Path(__file__).resolve().parents[1]
SHARED = "the machine was shared with other jobs: compare figures within one run, not across runs"


def machine() -> str:
    """CPU (with the vector instructions PyTorch uses on it, and whether it multiplies bf16
    natively: kernels, and so the last digits of trained models, differ between them), cores,
    Python, torch and its thread count, in one line."""
    import torch  # imported here: a bench that drives a server needs no torch of its own

    cpu = platform.processor() or platform.machine()
    bf16 = ", native bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else ""
    return (
        f"{cpu} ({torch.backends.cpu.get_cpu_capability()}{bf16}), {os.cpu_count()} CPU cores, "
        f"Python {platform.python_version()}, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads)"
    )


def load_average() -> float:
    """The 1-minute load average now: how much else the machine was doing."""
    return os.getloadavg()[0]


def context(load_at_start: float, *, env: str = "") -> dict:
    """The figures every results file starts with: the machine, the command (``env`` as in
    :func:`command`) and the load average at the start (``load_at_start``) and now."""
    return {
        "machine": machine(),
        "command": command(env=env),
        "load_average": [load_at_start, load_average()],
    }


def command(*, env: str = "") -> str:
    """The command line that ran this bench, from the repository root (``env``: variables to
    show before it, e.g. ``"NUMGEN_DATA_DIR=..."``)."""
    script = Path(sys.argv[0]).resolve()
    script = script.relative_to(REPO) if script.is_relative_to(REPO) else Path(script.name)
    arguments = [shlex.quote(without_machine_path(a)) for a in sys.argv[1:]]
    return " ".join([*([env] if env else []), "python", script.as_posix(), *arguments])


def without_machine_path(argument: str) -> str:
    """An absolute path as results files may show it: relative to the repository inside it,
    else ``.../`` and its last two parts (``/home/me/examples/vae/main.py``: ``.../vae/main.py``);
    any other argument as it is."""
    path = Path(argument)
    if not path.is_absolute():
        return argument
    if path.is_relative_to(REPO):
        return path.relative_to(REPO).as_posix()
    return ".../" + "/".join(path.parts[-2:])


def machine_line(figures: dict) -> str:
    """The results file's context line, from ``figures["machine"]``, ``["command"]`` and
    ``["load_average"]`` (a number, or [at start, at end])."""
    load = figures["load_average"]
    load_text = (
        f"{load[0]:.1f} / {load[1]:.1f} at start / end"
        if isinstance(load, list | tuple)
        else f"{load:.1f}"
    )
    return (
        f"Machine: {figures['machine']}. Command: `{figures['command']}`. "
        f"1-minute load average {load_text} ({SHARED})."
    )


def write_results(name: str | Path, figures: dict, markdown: str) -> Path:
    """Write ``figures`` as ``<name>.json`` and ``markdown`` as ``<name>.md`` in bench/results (or
    at ``name`` when it is a path; a ``.md`` or ``.json`` ending is dropped, any other dot kept,
    so ``touching0.5`` is not cut to ``touching0``); return the .md path."""
    out = Path(name) if Path(name).parent != Path(".") else RESULTS / str(name)
    out = out.with_name(out.name.removesuffix(".md").removesuffix(".json"))
    json_path, md_path = out.with_name(out.name + ".json"), out.with_name(out.name + ".md")
    out.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(figures, indent=2) + "\n")
    md_path.write_text(markdown if markdown.endswith("\n") else markdown + "\n")
    print(f"wrote {md_path} and {json_path.name}")
    return md_path
