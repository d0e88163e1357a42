"""The ``numgen`` command. :func:`run` is the console script's entry point; the commands and
their error handling are in :mod:`numgen.cli.main`, one module per group of commands beside it.

This module imports nothing heavy, so that :func:`run` can set up the garbage collector before
PyTorch is loaded.
"""

from __future__ import annotations

import gc
import sys


def run() -> None:
    """Console-script entry point: where the ``numgen`` process starts, so the one place that
    sets up process-wide state.

    A short command such as ``numgen write 2026`` spends much of its second starting up, in
    PyTorch's hundreds of thousands of objects rather than in its own work: the garbage collector
    would walk them again and again while they are created and during the imports that follow;
    none is garbage, so the collector is off while the modules load, and they are then frozen
    (skipped by later collections). The command's own objects are collected as usual. The
    process then exits as usual (``sys.exit``), running every exit hook (``atexit``: logging's
    flush, PyTorch's and any library's own), at about 0.1 s more than ending it at once.
    """
    gc.disable()
    from numgen.cli.main import main

    gc.freeze()
    gc.enable()
    sys.exit(main())
