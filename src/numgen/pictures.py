"""Reading pictures: opening an image file safely, finding a digit's ink in any picture, framing
it as MNIST frames its digits, cutting a written number into its digits and reading them.

Ink is a float array ``(H, W)`` in [0, 1] (ink = 1, background 0) whatever the picture's polarity.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from numgen.data import to_uint8
from numgen.errors import ComposeError
from numgen.recognizer import Recognizer, predict

STROKE_LEVEL = 0.2  # when reading pictures: ink above this is a stroke, fainter ink is haze
# A picture to copy a style from holds one digit; 50 million pixels (a 7000×7000 scan) is plenty.
MAX_IMAGE_PIXELS = 50_000_000


class ImageTooLarge(ComposeError):
    """A picture with more pixels than the caller allows (the web app answers 413)."""


class UnreadableImage(ComposeError):
    """A file that is not a picture in an accepted format, or a damaged one (the web app: 415)."""


def open_image(
    source: str | Path | bytes, formats: tuple[str, ...] | None = None,
    max_pixels: int = MAX_IMAGE_PIXELS, name: str | None = None,
) -> Image.Image:  # fmt: skip
    """The picture in the file at ``source`` (a path, or the file's bytes), fully decoded.

    ``formats`` limits the accepted formats (Pillow's names: "PNG", "JPEG", ...), ``max_pixels``
    the size, checked from the header before any pixel is decoded. Any file Pillow cannot fully
    decode is an :class:`UnreadableImage` and a too-large one an :class:`ImageTooLarge`, each
    naming ``name`` (default: the path, or "the image") and the problem; Pillow's own limits on
    PNG text chunks (``PngImagePlugin.MAX_TEXT_CHUNK``/``MAX_TEXT_MEMORY``) stay in force.
    """
    name = name or ("the image" if isinstance(source, bytes) else str(source))
    path = None if isinstance(source, bytes) else Path(source)
    # a pipe or a device would block the read or never end; a folder fails plainly below
    if path is not None and path.exists() and not (path.is_file() or path.is_dir()):
        raise UnreadableImage(f"{name}: not a regular file (a pipe, device or socket)")
    try:
        file = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")  # noqa: SIM115
    except OSError as err:  # missing, a folder, unreadable
        raise UnreadableImage(f"{name}: not a readable image ({err.strerror or err})") from None
    with file:
        image = _decode(file, name, formats, max_pixels)
    return image


def _decode(
    file: BinaryIO, name: str, formats: tuple[str, ...] | None, max_pixels: int
) -> Image.Image:
    """:func:`open_image` on an open file."""
    try:
        image = Image.open(file)
    except UnidentifiedImageError:
        kinds = ", ".join(formats) if formats else "image format Pillow reads"
        raise UnreadableImage(f"{name}: not a readable image (not a {kinds} file)") from None
    except Image.DecompressionBombError as err:  # over twice Pillow's MAX_IMAGE_PIXELS
        raise ImageTooLarge(f"{name}: too many pixels ({err})") from None
    # A damaged or hostile file can make a decoder raise almost anything (OSError, SyntaxError,
    # ValueError, EOFError, struct.error, IndexError, ...): each means "not a picture we can read".
    except Exception as err:
        raise UnreadableImage(f"{name}: not a readable image ({_reason(err)})") from None
    if formats is not None and image.format not in formats:
        raise UnreadableImage(
            f"{name}: {image.format} files are not accepted (only {', '.join(formats)})"
        )
    if image.width * image.height > max_pixels:
        raise ImageTooLarge(
            f"{name}: {image.width}×{image.height} pixels is over the limit of {max_pixels:,}"
        )
    try:
        image.load()  # Pillow decodes lazily: a truncated or corrupt file fails here
    except Exception as err:  # as above: any decoder error means a damaged file
        raise UnreadableImage(f"{name}: a damaged {image.format} file ({_reason(err)})") from None
    return image


def _reason(err: Exception) -> str:
    """An exception's message, or its type's name when it has none; one line."""
    return (str(err) or type(err).__name__).splitlines()[0][:200]


def _grey(image: Image.Image | np.ndarray) -> np.ndarray:
    """A picture (PIL, or an array (H, W) / (H, W, 3|4) of uint8 or floats) -> grey levels
    ``(H, W)`` float32 in [0, 1]; transparent pixels count as white paper."""
    if isinstance(image, np.ndarray):
        if image.size == 0 or image.ndim not in (2, 3) or image.shape[2:] not in ((), (3,), (4,)):
            raise ComposeError(f"an image array must be (H, W) or (H, W, 3|4), got {image.shape}")
        if image.dtype != np.uint8:  # floats in [0, 1], or in [0, 255] if any exceeds 1
            image = to_uint8(image / 255 if np.nanmax(image) > 1 else image)
        image = Image.fromarray(image)
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        paper = Image.new("RGBA", image.size, "white")
        image = Image.alpha_composite(paper, image.convert("RGBA"))
    return np.asarray(image.convert("L"), dtype=np.float32) / 255


def image_to_ink(image: Image.Image | np.ndarray) -> np.ndarray:
    """Any picture of a digit -> its ink ``(H, W)`` float32 in [0, 1], background 0.

    The background level is the median of the border pixels, so dark-on-light and light-on-dark
    pictures both come out as light ink on black; the contrast is stretched to reach 1.
    """
    grey = _grey(image)
    if min(grey.shape) < 2:
        raise ComposeError(f"the image of {grey.shape[1]}×{grey.shape[0]} pixels is too small")
    border = np.concatenate([grey[0], grey[-1], grey[1:-1, 0], grey[1:-1, -1]])
    background = float(np.median(border))
    ink = grey - background if background < 0.5 else background - grey
    contrast = float(ink.max())
    if contrast < 0.15:
        raise ComposeError("the image is blank: no strokes stand out from its background")
    return np.clip(ink / contrast, 0.0, 1.0)


def centre_like_mnist(ink: np.ndarray) -> np.ndarray:
    """Ink ``(H, W)`` in [0, 1] -> a digit ``(28, 28)`` framed as MNIST frames its digits: the
    inked box scaled (aspect kept) so its longer side is 20 pixels, then placed so its centre of
    mass sits at the centre of the 28×28 field."""
    rows, cols = np.nonzero(ink > STROKE_LEVEL)  # faint haze does not stretch the box
    if len(rows) == 0:
        raise ComposeError("the image is blank: it holds no ink")
    box = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    h, w = box.shape
    factor = 20 / max(h, w)
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    small = np.asarray(Image.fromarray(box).resize(size, Image.Resampling.BILINEAR))
    small = np.clip(small, 0.0, 1.0)
    mass = small.sum()
    cy = (small.sum(axis=1) * np.arange(small.shape[0])).sum() / mass
    cx = (small.sum(axis=0) * np.arange(small.shape[1])).sum() / mass
    top = int(np.clip(round(13.5 - cy), 0, 28 - small.shape[0]))
    left = int(np.clip(round(13.5 - cx), 0, 28 - small.shape[1]))
    out = np.zeros((28, 28), dtype=np.float32)
    out[top : top + small.shape[0], left : left + small.shape[1]] = small
    return out


def read_digits(recognizer: Recognizer, images: np.ndarray) -> np.ndarray:
    """The recognizer's reading of digits ``(N, 28, 28)`` in [0, 1]: labels ``(N,)`` int64."""
    labels, _ = predict(recognizer, torch.from_numpy(np.asarray(images, np.float32)).unsqueeze(1))
    return labels


def segment(ink: np.ndarray) -> list[tuple[int, int]]:
    """The columns ``[x0, x1)`` of each run of stroked columns of ``ink`` ``(H, W)``, left to
    right: the digits of a number written with gaps between them."""
    stroked = np.concatenate([[0], (ink.max(axis=0) > STROKE_LEVEL).astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(stroked))  # where runs start and end, alternately
    return [(int(x0), int(x1)) for x0, x1 in zip(edges[::2], edges[1::2], strict=True)]


def read_number(recognizer: Recognizer, image: Image.Image | np.ndarray) -> str:
    """The number the recognizer reads in a picture (either ink): each run of stroked columns is
    cut out, framed as MNIST and read as one digit."""
    ink = image_to_ink(image)
    cells = [centre_like_mnist(ink[:, x0:x1]) for x0, x1 in segment(ink)]
    return "".join(str(d) for d in read_digits(recognizer, np.stack(cells)))
