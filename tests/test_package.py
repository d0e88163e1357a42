"""The package itself: what `import numgen` costs and changes, and what installing it pulls in."""

from __future__ import annotations

import subprocess
import sys
import tomllib

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
