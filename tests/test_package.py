"""The package itself: what `import numgen` costs and changes, and what installing it pulls in."""

from __future__ import annotations

import ast
import graphlib
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from conftest import REPO

# Imported where they are used (plots, Fréchet distance, the web app), never by `import numgen`.
HEAVY = ("matplotlib", "scipy", "sklearn", "fastapi", "uvicorn", "pandas", "mlxtend")


def test_import_numgen_loads_no_plotting_scipy_or_web_stack() -> None:
    code = (
        "import sys, numgen; "
        "assert {'load', 'Writer'} <= set(dir(numgen)); "
        "assert callable(numgen.load) and callable(numgen.Writer.from_pretrained); "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""


def test_writing_a_number_imports_neither_plotting_nor_pytorchs_compiler(tmp_path) -> None:
    """`numgen write` is a one-second command: Matplotlib (for figures only), and sympy and
    torch._dynamo (pulled in by random ops on the meta device, where loading checks a file's
    shapes) would each add about half a second."""
    out = tmp_path / "n.png"
    code = (
        "import sys; from numgen.cli.main import main; "
        f"assert main(['write', '2026', '--out', {str(out)!r}]) == 0; "
        "print('heavy:', *(m for m in ('matplotlib', 'sympy', 'torch._dynamo') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines()[-1] == "heavy:"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_console_entry_point_loads_pytorch_only_once_it_has_run(tmp_path) -> None:
    """`numgen.cli.run` turns the garbage collector off before PyTorch's import (a tenth of a
    second of collections), so importing it must not import PyTorch; it then writes the number,
    prints what it wrote and exits with the command's code."""
    code = "import sys, numgen.cli; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
    out = tmp_path / "n.png"
    ok = subprocess.run([sys.executable, "-m", "numgen", "write", "2026", "--out", str(out)],
                        capture_output=True, text=True)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == f"wrote {out}"  # flushed before the process ends at once
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = subprocess.run([sys.executable, "-m", "numgen", "write", "20x6"],
                         capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 2
    assert bad.stderr.startswith("Error: ") and "Traceback" not in bad.stderr


def test_drawing_a_picture_leaves_the_plotting_backend_alone(tmp_path) -> None:
    """plots uses Matplotlib's Figure API, so it never switches pyplot's backend (a notebook that
    imports numgen keeps its inline plots) and never opens a window."""
    code = (
        "import matplotlib, sys; matplotlib.use('svg'); "
        "import numpy as np; from numgen import plots; "
        f"plots.plot_digit(np.zeros((28, 28)), {str(tmp_path / 'd.png')!r}, 'zero'); "
        "print(matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["svg", "False"]
    assert (tmp_path / "d.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_dependencies_are_the_core_ones_and_the_web_stack_is_an_extra() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]

    def names(requirements: list[str]) -> set[str]:
        return {r.split(">")[0].split("=")[0].split("[")[0].strip() for r in requirements}

    assert names(project["dependencies"]) == {
        "torch", "numpy", "safetensors", "pillow", "matplotlib", "typer", "rich", "scipy",
    }  # fmt: skip
    extras = project["optional-dependencies"]
    assert names(extras["web"]) == {
        "fastapi", "uvicorn", "python-multipart", "fastapi-offline", "greenback",
    }  # fmt: skip


def import_graph(root: Path) -> dict[str, set[str]]:
    """{module: the numgen modules it imports} for every module under ``root`` (the folder that
    holds the ``numgen`` package), read from the source: imports inside functions and under
    ``TYPE_CHECKING`` count too. ``from numgen import x`` imports the module ``numgen.x`` where
    there is one, else the package."""
    files = {}
    for path in (root / "numgen").rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        imported = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the package, one level up per extra dot
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                imported |= {
                    f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names
                }
        graph[module] = {name for name in imported if name in files and name != module}
    return graph


def test_the_package_has_no_import_cycle(tmp_path) -> None:
    graph = import_graph(REPO / "src")
    assert "numgen.models.base" in graph and "numgen.hub" in graph["numgen.compose"]
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError naming the modules of a cycle
    # the check itself sees a cycle, even one through a lazy import inside a function
    (tmp_path / "numgen").mkdir()
    (tmp_path / "numgen" / "__init__.py").write_text("")
    (tmp_path / "numgen" / "low.py").write_text("def f():\n    from numgen import high\n")
    (tmp_path / "numgen" / "high.py").write_text("from numgen.low import f\n")
    with pytest.raises(graphlib.CycleError):
        graphlib.TopologicalSorter(import_graph(tmp_path)).prepare()


def test_the_file_layer_sits_under_the_models_and_the_loader_above_them() -> None:
    """numgen.files (atomic writes, weights read once and checked) reaches nothing of the models
    or the loader, even through what it imports; the loader and the training-state checks build
    on it."""
    graph = import_graph(REPO / "src")

    def reached(module: str) -> set[str]:
        seen, todo = set(), [module]
        while todo:
            for name in graph[todo.pop()] - seen:
                seen.add(name)
                todo.append(name)
        return seen

    assert reached("numgen.files") == {"numgen.config", "numgen.errors"}
    assert {"numgen.files", "numgen.models"} <= graph["numgen.hub"]
    assert {"numgen.files", "numgen.models"} <= graph["numgen.checkpoint_checks"]


def test_the_help_and_the_page_name_every_model_family() -> None:
    """`numgen --help` and the web page describe numgen in the same words, which name the
    families it has (not the VAEs alone, as they once did)."""
    run = subprocess.run([sys.executable, "-m", "numgen", "--help"], capture_output=True,
                         text=True, timeout=120, env={**os.environ, "COLUMNS": "300"})  # fmt: skip
    words = " ".join(run.stdout.split())
    page = " ".join((REPO / "src/numgen/web/static/index.html").read_text().split())
    line = ("Handwritten digits and numbers from generative models trained on MNIST: variational "
            "autoencoders, flow matching and a one-step flow.")  # fmt: skip
    assert line in words and line in page
