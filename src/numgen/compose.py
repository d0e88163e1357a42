"""Handwritten numbers from any conditional model family: digits by class, whole numbers in one
style (with their dates' dots, amounts' commas, phones' brackets ... drawn in that style by
:mod:`numgen.glyphs`), a style copied from an image, morphs between digits or styles.

A conditional generator (:class:`numgen.models.Generator`: a CVAE, a flow ...) takes the digit as
its label and the handwriting *style* — slant, thickness, width — as a vector. So a number is
written by drawing each of its digits in the SAME style with that digit's label, then laying the
digits out left to right with natural gaps and a little seeded jitter of size, height and spacing.

Images are float arrays ``(N, 28, 28)`` in [0, 1] (ink = 1) or PIL images; a style is a vector
``(style_dim,)``. Every random choice comes from a ``seed``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from numgen import generate, glyphs, legibility, outline
from numgen.data import to_uint8
from numgen.errors import NumgenError
from numgen.hub import load
from numgen.models import Generator
from numgen.recognizer import Recognizer, predict

MAX_DIGITS = 64  # the longest text one call writes, in characters
DIGITS = glyphs.DIGITS
CHARACTERS = glyphs.CHARACTERS  # digits, . , - + / : ( ) and space
INKS = ("light", "dark")  # white ink on black as MNIST, or dark ink on white paper
# The bundled model that writes by default: the flow (crisp, varied digits; bench/results/sharp.md).
# "cvae" draws ~30 times faster, softer and more uniform.
DEFAULT_WRITER = "flow"
# Layout of a number, in pixels of the 28×28 digit cells.
MARGIN = 4  # blank columns left and right of the number, as MNIST's 4-pixel border
GAPS = (2, 5)  # blank columns between neighbouring digits: drawn uniformly from this range
RISE = 1  # each digit moves up or down by up to this many pixels
SIZE_JITTER = 0.06  # each digit is scaled by a factor within 1 ± this
STROKE_LEVEL = 0.2  # when reading pictures: ink above this is a stroke, fainter ink is haze
# A picture to copy a style from holds one digit; 50 million pixels (a 7000×7000 scan) is plenty.
MAX_IMAGE_PIXELS = 50_000_000


class ComposeError(NumgenError, ValueError):
    """Input that cannot be written or read (bad text, a blank image ...); says which and why."""


# --- checks --------------------------------------------------------------------------------------


def check_model(model: Generator) -> Generator:
    """The model itself, if it is conditional (it must be told which digit to draw)."""
    if not model.conditional:
        raise ComposeError(
            f"writing chosen digits needs a conditional model (a cvae or a flow), "
            f"not kind {model.config.kind!r}"
        )
    return model


def check_text(text: str) -> str:
    """The text itself if it is 1 to ``MAX_DIGITS`` of the characters numgen writes
    (``CHARACTERS``), at least one a digit; else a ComposeError saying why."""
    if not text:
        raise ComposeError("the text to write is empty: give a number, e.g. 2026 or 02.12.2026")
    if len(text) > MAX_DIGITS:
        raise ComposeError(
            f"the text has {len(text):,} characters; at most {MAX_DIGITS} characters"
        )
    bad = [(i, c) for i, c in enumerate(text) if c not in CHARACTERS]
    if bad:
        position, char = bad[0]
        raise ComposeError(
            f"{text!r} cannot be written: {char!r} at position {position + 1} is not a character "
            f"numgen writes ({glyphs.CHARSET})"
        )
    if not any(c in DIGITS for c in text):
        raise ComposeError(f"{text!r} holds no digit: numgen writes numbers, give at least one")
    return text


def check_style(model: Generator, style: np.ndarray) -> np.ndarray:
    """A style as float32 ``(style_dim,)``, or a ComposeError naming the wrong shape."""
    style = np.asarray(style, dtype=np.float32)
    if style.shape != (model.style_dim,):
        raise ComposeError(
            f"a style for this model is a vector of {model.style_dim} numbers, "
            f"got shape {style.shape}"
        )
    if not np.isfinite(style).all():
        raise ComposeError("the style holds NaN or infinite numbers")
    return style


# --- digits and styles ---------------------------------------------------------------------------


def style_latent(model: Generator, seed: int, temperature: float | None = None) -> np.ndarray:
    """One handwriting style drawn with ``seed`` from N(0, T² I), T the model's temperature unless
    given: ``(style_dim,)``."""
    return generate.draw_styles(model, 1, seed, temperature)[0]


def digits(
    model: Generator, digit: int, n: int, seed: int = 0, temperature: float | None = None,
    stats: dict[str, int] | None = None,
) -> np.ndarray:  # fmt: skip
    """``n`` drawings of ``digit`` in ``n`` styles drawn with ``seed`` (as :func:`style_latent`
    draws them; a style whose drawing fails the model's legibility check is redrawn, see
    :mod:`numgen.legibility`, which counts its redraws into ``stats``): ``(n, 28, 28)`` in
    [0, 1]."""
    check_model(model)
    if digit not in range(10):
        raise ComposeError(f"digit={digit}: choose a digit from 0 to 9")
    if n < 1:
        raise ComposeError(f"n={n}: ask for at least one digit")
    styles = legibility.stream(model, n, seed, temperature)
    return legibility.draw_checked(
        model, styles, np.full(n, digit), np.ones(n, int), generate.digit_seeds(seed, n),
        stats=stats,
    )  # fmt: skip


def morph(
    model: Generator, start: int, end: int, steps: int = 10,
    style: np.ndarray | None = None, end_style: np.ndarray | None = None,
) -> np.ndarray:  # fmt: skip
    """``steps`` frames from digit ``start`` to digit ``end``, ``(steps, 28, 28)`` in [0, 1].

    The label fed to the decoder blends linearly from one digit's one-hot vector to the other's,
    and the style from ``style`` to ``end_style`` (default: the same style throughout, so
    ``morph(m, 3, 3, style=a, end_style=b)`` morphs the handwriting alone). ``style`` defaults to
    the prior's centre, the model's "average" hand. Every frame shares one seed, so a flow's
    frames differ only by label and style.
    """
    check_model(model)
    for name, digit in (("start", start), ("end", end)):
        if digit not in range(10):
            raise ComposeError(f"{name}={digit}: choose a digit from 0 to 9")
    if steps < 2:
        raise ComposeError(f"steps={steps}: a morph needs at least 2 frames")
    a = np.zeros(model.style_dim, np.float32) if style is None else style
    a = check_style(model, a)
    b = a if end_style is None else check_style(model, end_style)
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]  # (steps, 1)
    eye = np.eye(model.config.num_classes, dtype=np.float32)
    soft_labels = (1 - t) * eye[start] + t * eye[end]  # (steps, 10), rows sum to 1
    seeds = np.zeros(steps, dtype=np.int64)
    return generate.draw(model, (1 - t) * a + t * b, soft_labels, seeds)


# --- laying out a number -------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """The jitter of one number of ``n`` digits, drawn by :func:`draw_layout`."""

    scales: np.ndarray  # (n,) size factor of each digit, within 1 ± SIZE_JITTER
    rises: np.ndarray  # (n,) int: pixels each digit moves up (negative: down)
    gaps: np.ndarray  # (n - 1,) int: blank columns between neighbours


def draw_layout(rng: np.random.Generator, n: int) -> Layout:
    """Random sizes, heights and gaps for ``n`` digits, all from one draw of ``rng``."""
    scales, rises, gaps = jitter(rng.random((3, n)))
    return Layout(scales=scales, rises=rises, gaps=gaps[1:])


def jitter(u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each digit's size factor, rise and gap before it, from uniform numbers ``u`` ``(3, ...)``
    in [0, 1), digit by digit (so many numbers' digits can be done at once)."""
    return (
        (1 + SIZE_JITTER * (2 * u[0] - 1)).astype(np.float32),
        (u[1] * (2 * RISE + 1)).astype(int) - RISE,
        GAPS[0] + (u[2] * (GAPS[1] - GAPS[0] + 1)).astype(int),
    )


def resize_about_centre(images: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Each image ``(N, 28, 28)`` enlarged by its factor in ``scales`` ``(N,)`` about the image
    centre, bilinearly, on the same 28×28 canvas: ``(N, 28, 28)``.

    Bilinear resampling is separable, so each image is two small matrix products ``R X Rᵀ``,
    where row ``i`` of ``R`` holds the interpolation weights output pixel ``i`` reads from —
    several times faster than ``grid_sample`` for 28×28 images, with the same result.
    """
    n = len(scales)
    # Pixel i has its centre at i + 0.5; it reads the source at (i + 0.5 - 14) / scale + 14.
    source = (np.arange(28) + 0.5 - 14) / np.asarray(scales, np.float32)[:, None] + 13.5  # (N, 28)
    left = np.floor(source).astype(int)
    weight = (source - left).astype(np.float32)
    # Columns 0 and 29 stand for pixels beyond the edges (ink 0); they are dropped after filling.
    r = np.zeros((n, 28, 30), dtype=np.float32)
    image, pixel = np.arange(n)[:, None], np.arange(28)[None, :]
    r[image, pixel, np.clip(left, -1, 28) + 1] = 1 - weight
    r[image, pixel, np.clip(left + 1, -1, 28) + 1] = weight
    r = torch.from_numpy(r[:, :, 1:29].copy())
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    return (r @ x @ r.transpose(1, 2)).numpy()


def lay_out(
    cells: np.ndarray, layout: Layout, text: str | None = None
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Place the characters' cells ``(n, 28, 28)`` side by side: each is cut to its inked columns,
    raised by its rise, and separated from the previous by its gap, within a ``MARGIN`` on both
    ends; a space of ``text`` (digits alone when None) is ``glyphs.SPACE_WIDTH`` blank columns.

    Returns the canvas ``(28, W)`` in [0, 1] and the columns ``[x0, x1)`` on it of each character
    other than a space.
    """
    text = DIGITS[0] * len(cells) if text is None else text
    first, widths = glyphs.inked_columns(cells, text)
    canvas = np.zeros((28, 2 * MARGIN + widths.sum() + layout.gaps.sum()), dtype=np.float32)
    boxes, x = [], MARGIN
    for i, cell in enumerate(cells):
        r = int(layout.rises[i])  # rows move up by r; the 4-pixel border keeps the ink whole
        if text[i] != glyphs.SPACE:
            src = cell[max(r, 0) : 28 + min(r, 0), first[i] : first[i] + widths[i]]
            canvas[max(-r, 0) : 28 + min(-r, 0), x : x + widths[i]] = src
            boxes.append((x, x + int(widths[i])))
        x += int(widths[i]) + (int(layout.gaps[i]) if i < len(layout.gaps) else 0)
    return canvas, boxes


def to_pixels(canvas: np.ndarray, height: int = 28, ink: str = "light") -> np.ndarray:
    """A canvas ``(h, W)`` in [0, 1] (ink = 1) as grey levels, uint8 ``(height, W')``, in the
    chosen ink: "light" (white on black, as MNIST) or "dark" (dark on white paper). Taller than
    ``h``, the ink is redrawn as a crisp outline (:func:`outline.crisp`); shorter, resampled
    (Lanczos); at ``h``, the canvas itself."""
    if ink not in INKS:
        raise ComposeError(f"ink={ink!r}: choose one of {', '.join(INKS)}")
    if not 8 <= height <= 1024:
        raise ComposeError(f"height={height}: choose between 8 and 1024 pixels")
    pixels = to_uint8(canvas)
    if height > pixels.shape[0]:  # a clean outline rather than an enlarged blur
        pixels = to_uint8(outline.crisp(pixels, height))
    if ink == "dark":
        pixels = 255 - pixels
    if height == pixels.shape[0]:
        return pixels
    width = max(1, round(pixels.shape[1] * height / pixels.shape[0]))
    resized = Image.fromarray(pixels, mode="L").resize((width, height), Image.Resampling.LANCZOS)
    return np.asarray(resized)


def to_picture(canvas: np.ndarray, height: int = 28, ink: str = "light") -> Image.Image:
    """:func:`to_pixels` as an "L" image."""
    return Image.fromarray(to_pixels(canvas, height, ink), mode="L")


def render(
    model: Generator, texts: list[str], styles: legibility.StyleRounds, layouts: list[Layout],
    seeds: np.ndarray, rounds: int = legibility.ROUNDS,
) -> list[tuple[np.ndarray, list[tuple[int, int]]]]:  # fmt: skip
    """Canvases of many numbers with ONE draw call for all their digits (and one for each round
    of the legibility check).

    ``texts[i]`` is written in style ``styles(0, [i])`` (see :func:`legibility.draw_checked`:
    every digit of a number shares its number's style, redrawn as a whole if any digit is
    misread) with jitter ``layouts[i]``; ``seeds`` holds one int64 per character of all texts,
    in order (a digit's seed for the model, another character's for its jitter). Characters
    other than digits are drawn in their number's hand (:func:`glyphs.cells`). Returns
    :func:`lay_out`'s ``(canvas, boxes)`` for each number.
    """
    chars = "".join(texts)
    codes = np.frombuffer(chars.encode(), dtype=np.uint8)
    is_digit = (codes >= ord("0")) & (codes <= ord("9"))
    counts = [sum(c in DIGITS for c in text) for text in texts]
    scales = np.concatenate([layout.scales for layout in layouts])
    drawn = legibility.draw_checked(
        model, styles, codes[is_digit] - ord("0"), np.array(counts), seeds[is_digit], rounds
    )
    cells = glyphs.cells(texts, resize_about_centre(drawn, scales[is_digit]), scales, seeds)
    ends = np.cumsum([len(t) for t in texts])
    return [
        lay_out(cells[end - len(text) : end], layout, text)
        for end, text, layout in zip(ends, texts, layouts, strict=True)
    ]


def write(
    model: Generator, text: str, style: np.ndarray | None = None, style_seed: int = 0, seed: int = 0,
    height: int = 28, ink: str = "light",
) -> Image.Image:  # fmt: skip
    """The number ``text`` written in one handwriting style, as an "L" image ``height`` tall;
    its characters other than digits (``CHARACTERS``) drawn in that hand.

    The style is ``style`` (``(style_dim,)``, e.g. from :func:`style_from_image`), kept as given,
    or else the one drawn with ``style_seed`` (redrawn from that seed's stream if the model's
    legibility check misreads a digit); ``seed`` draws the jitter of sizes, heights and gaps
    (and each digit's own randomness, for families that have some).
    """
    check_model(model)
    text = check_text(text)
    if style is None:
        styles, rounds = legibility.seeded(model, np.array([style_seed])), legibility.ROUNDS
    else:
        styles, rounds = legibility.given(check_style(model, style)[None]), 0
    layout = draw_layout(np.random.default_rng(seed), len(text))
    seeds = generate.digit_seeds(seed, len(text))
    [(canvas, _)] = render(model, [text], styles, [layout], seeds, rounds)
    return to_picture(canvas, height, ink)


# --- a style from an image -----------------------------------------------------------------------


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


def style_from_image(
    model: Generator, image: Image.Image | np.ndarray, recognizer: Recognizer | None = None
) -> np.ndarray:
    """The handwriting style of a picture of one digit: ``(style_dim,)`` float32.

    The picture (any size, either polarity) is framed as MNIST, read by the recognizer (the bundled
    one by default) to learn which digit it is, and the model reads its style with that label
    (a CVAE's posterior mean; a flow's, see :meth:`Generator.encode_style`), ready for
    :func:`write`.
    """
    check_model(model)
    if not model.can_encode_style:
        raise ComposeError(f"a {model.config.kind} model cannot read a style from a picture")
    digit = centre_like_mnist(image_to_ink(image))
    label = read_digits(recognizer or Recognizer.from_pretrained(), digit[None])
    with torch.inference_mode():
        x = torch.from_numpy(digit[None, None]).to(model.device)
        style = model.encode_style(x, torch.as_tensor(label, device=model.device))
    return style[0].float().cpu().numpy()


# --- the pipeline --------------------------------------------------------------------------------


class Writer:
    """A conditional model ready to write: ``Writer.from_pretrained().write("2026")``."""

    def __init__(self, model: Generator, recognizer: Recognizer | None = None) -> None:
        self.model = check_model(model)
        self._recognizer = recognizer  # loaded on first use by style_from_image

    @classmethod
    def from_pretrained(cls, name_or_path: str = DEFAULT_WRITER, device: str = "cpu") -> Writer:
        """A writer over a bundled model name or a model/run directory."""
        return cls(load(name_or_path, device))

    def style(self, seed: int) -> np.ndarray:
        """The style drawn with ``seed``: ``(style_dim,)``. (``write(text, style_seed=seed)``
        starts from it, and redraws it if the model's legibility check misreads a digit.)"""
        return style_latent(self.model, seed)

    def digits(self, digit: int, n: int = 16, seed: int = 0) -> np.ndarray:
        """``n`` drawings of ``digit`` in varied styles: ``(n, 28, 28)`` in [0, 1]."""
        return digits(self.model, digit, n, seed)

    def write(
        self, text: str, style: np.ndarray | None = None, style_seed: int = 0, seed: int = 0,
        height: int = 28, ink: str = "light",
    ) -> Image.Image:  # fmt: skip
        """The number ``text`` in one style, as an "L" image (see :func:`write`)."""
        return write(self.model, text, style, style_seed, seed, height, ink)

    def style_from_image(self, image: Image.Image | np.ndarray) -> np.ndarray:
        """The style of a picture of one digit: ``(style_dim,)`` (see :func:`style_from_image`)."""
        if self._recognizer is None:
            self._recognizer = Recognizer.from_pretrained(device=self.model.device)
        return style_from_image(self.model, image, self._recognizer)

    def morph(
        self, start: int, end: int, steps: int = 10,
        style: np.ndarray | None = None, end_style: np.ndarray | None = None,
    ) -> np.ndarray:  # fmt: skip
        """Frames from digit ``start`` to ``end``: ``(steps, 28, 28)`` (see :func:`morph`)."""
        return morph(self.model, start, end, steps, style, end_style)
