"""Child processes that end with the process that started them.

A killed parent does not take its children along: a pool worker of an export or a training rank
whose parent is gone would wait forever on a pipe or a collective. On Linux each child asks the
kernel to kill it when its parent ends (``prctl(PR_SET_PDEATHSIG)``); elsewhere this is a no-op.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def die_with_parent(parent: int) -> None:
    """Have this process killed (SIGKILL) when its parent ends; ``parent`` is the pid its
    parent had when it started it: if that one has already gone, end now. Call it first thing
    in a child (a pool initializer, a ``preexec_fn``); the setting survives ``exec``."""
    if not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the request was made
        os._exit(1)
