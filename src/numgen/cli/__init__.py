"""The ``numgen`` command. :func:`run` is the console script's entry point; the commands and
their error handling are in :mod:`numgen.cli.main`, one module per group of commands beside it.

This module imports nothing heavy, so that :func:`run` can set up the garbage collector before
PyTorch is loaded.
"""

from __future__ import annotations

import gc
import sys


def run() -> None:
    """Console-script entry point.

    A short command such as ``numgen write 2026`` spends most of its second starting up and
    shutting down: PyTorch's import creates hundreds of thousands of objects, and the garbage
    collector would walk them all again and again while they are created, once more during the
    imports that follow, and once at exit. None of them is garbage, so the collector is off while
    the modules load, and they are then frozen (skipped by later collections, still released at
    exit). The command's own objects are collected as usual.
    """
    gc.disable()
    from numgen.cli.main import main

    gc.freeze()
    gc.enable()
    code = main()
    gc.freeze()  # exit: skip the last full collection; a command's files are closed by then
    sys.exit(code)
