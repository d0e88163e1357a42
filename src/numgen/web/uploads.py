"""Uploaded pictures: read with :func:`numgen.pictures.open_image`, so any file Pillow cannot fully
decode is a 4xx naming the problem, with bounded memory.

A 4 MiB upload can hold 16 million pixels, which decode to 64 MB and take a few hundred MB more
while a style is read from them; 60 of them at once in the server's worker threads would take
gigabytes (and glibc keeps freed memory in per-thread arenas). So at most ``DECODERS`` uploads are
decoded and read at once, large pictures are reduced before the style is read (a digit ends up
20 pixels tall anyway), and freed memory goes back to the system after each upload.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from fastapi import HTTPException, UploadFile
from PIL import Image

from numgen import pictures

MAX_UPLOAD_BYTES = 4 * 1024 * 1024
MAX_UPLOAD_PIXELS = 4096 * 4096
UPLOAD_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP")
MAX_SIDE = 1024  # a larger picture is reduced (by a whole factor, box filter) before reading it
DECODERS = 2  # uploads decoded at once: the machine's cores, not the server's worker threads

_decoders = threading.BoundedSemaphore(DECODERS)
T = TypeVar("T")


M_ARENA_MAX = -8  # glibc's mallopt parameter (malloc.h)
MALLOC_ARENAS = 2


def _glibc() -> ctypes.CDLL | None:
    """The C library, if it is glibc (its ``malloc_trim`` returns freed memory to the system)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        return libc if libc is not None and hasattr(libc, "malloc_trim") else None
    except OSError:  # not glibc (musl, macOS): their allocators differ
        return None


_libc = _glibc()


def keep_memory_returnable() -> None:
    """Let glibc give each of the server's worker threads no malloc arena of its own (at most
    ``MALLOC_ARENAS`` in all): memory freed in a thread's own arena mostly stays in the process
    even after ``malloc_trim``; 60 concurrent uploads left ~250 MB held that way. Affects the
    whole process, so the app calls it when it is created, not at import."""
    if _libc is not None:
        _libc.mallopt(M_ARENA_MAX, MALLOC_ARENAS)


@contextmanager
def one_decoder() -> Iterator[None]:
    """Wait for a free decoder slot; give the memory used back to the system afterwards."""
    with _decoders:
        try:
            yield
        finally:
            if _libc is not None:
                _libc.malloc_trim(0)


def read_upload(upload: UploadFile) -> Image.Image:
    """The uploaded file as a decoded PIL image (at most ``MAX_SIDE`` pixels a side), or a 4xx
    naming what is wrong with it. Call it inside :func:`one_decoder`."""
    data = upload.file.read(MAX_UPLOAD_BYTES + 1)
    if not data:
        raise HTTPException(400, "image: the uploaded file is empty")
    if len(data) > MAX_UPLOAD_BYTES:
        raise HTTPException(413, f"image: larger than {MAX_UPLOAD_BYTES // 2**20} MiB")
    try:
        image = pictures.open_image(data, UPLOAD_FORMATS, MAX_UPLOAD_PIXELS, name="image")
    except pictures.ImageTooLarge as err:
        raise HTTPException(413, str(err)) from None
    except pictures.UnreadableImage as err:
        raise HTTPException(415, str(err)) from None
    factor = -(-max(image.size) // MAX_SIDE)  # ceiling division
    if factor == 1:
        return image
    if image.mode not in ("L", "LA", "RGB", "RGBA"):  # Image.reduce takes these, not P or 1
        image = image.convert("RGBA")
    return image.reduce(factor)


def with_upload(upload: UploadFile, use: Callable[[Image.Image], T]) -> T:
    """``use(picture)`` on the decoded upload, holding a decoder slot the whole time."""
    with one_decoder():
        return use(read_upload(upload))
