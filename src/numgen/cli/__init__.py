"""The ``numgen`` command. :func:`run` is the console script's entry point; the commands and
their error handling are in :mod:`numgen.cli.main`, one module per group of commands beside it.

This module imports nothing heavy, so that :func:`run` can set up the garbage collector before
PyTorch is loaded.
"""

from __future__ import annotations

import gc
import logging
import os
import sys


def run() -> None:
    """Console-script entry point.

    A short command such as ``numgen write 2026`` spends most of its second starting up and
    shutting down, in PyTorch's hundreds of thousands of objects rather than in its own work:

    - the garbage collector would walk them again and again while they are created and during
      the imports that follow; none is garbage, so the collector is off while the modules load,
      and they are then frozen (skipped by later collections). The command's own objects are
      collected as usual;
    - the interpreter's exit would release them one by one and run PyTorch's exit hooks (0.1 s).
      Every command has closed its files and stopped its workers by the time it returns, so the
      process flushes its output and ends at once (``os._exit``).
    """
    gc.disable()
    from numgen.cli.main import main

    gc.freeze()
    gc.enable()
    code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
