"""The C allocator's settings for drawing on a CPU: freed activations kept for the next pass.

Drawing allocates and frees the same few activations of 3-13 MB in every pass of 256 digits (a
U-Net's 16 channels at 28×28 are 12.5 MB). By default glibc's malloc hands blocks of that size
back to the kernel when they are freed (trimming the top of its heap, or unmapping a block that
had its own mapping), so the next pass takes fresh pages, and the kernel zeroes each on its first
touch. Measured on 2 cores, the bundled onestep spent about a third of its drawing time in those
page faults (``bench/results/draw_speed_allocator.md``). Keeping blocks of up to 32 MiB in the
heap, and trimming it only when more than 256 MiB of it lies free, lets every pass after the
first reuse the pages of the pass before; the results are the same bytes.

A process-wide setting, made by :func:`numgen.hub.place` when a model goes to the CPU; a user who
sets glibc's own variables (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``) keeps theirs.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1  # mallopt's parameter numbers, from glibc's <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's largest: blocks below it come from the heap
TRIM_THRESHOLD = 256 << 20  # free memory the heap keeps before giving any back
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def keep_freed_memory() -> bool:
    """Have this process's malloc keep freed blocks for reuse (see the module docstring).
    Returns whether the settings were made: not on a system without glibc's ``mallopt``, nor
    where the user set its variables. Calling it again changes nothing."""
    if not sys.platform.startswith("linux") or any(name in os.environ for name in USER_SETTINGS):
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
