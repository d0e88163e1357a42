"""numgen: handwritten digits and numbers from generative models trained on MNIST.

``numgen.load`` and ``numgen.Writer`` are loaded on first use (PEP 562), so that importing the
package alone does not import PyTorch: the ``numgen`` command sets up before it does (see
:func:`numgen.cli.run`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from numgen.version import __version__

__all__ = ["Writer", "__version__", "load"]

if TYPE_CHECKING:
    from numgen.compose import Writer
    from numgen.hub import load


def __getattr__(name: str) -> object:
    if name == "Writer":
        from numgen.compose import Writer

        return Writer
    if name == "load":
        from numgen.hub import load

        return load
    raise AttributeError(f"module 'numgen' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
