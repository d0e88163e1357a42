"""Handwritten numbers from any conditional model family: digits by class, whole numbers in one
style (with their dates' dots, amounts' commas, phones' brackets ... drawn in that style by
:mod:`numgen.glyphs`), a style copied from an image, morphs between digits or styles.

A conditional generator (:class:`numgen.models.Generator`: a CVAE, a flow ...) takes the digit as
its label and the handwriting *style* — slant, thickness, width — as a vector. So a number is
written by drawing each of its digits in the SAME style with that digit's label, then laying the
digits out left to right with natural gaps and a little seeded jitter of size, height and spacing.

Images are float arrays ``(N, 28, 28)`` in [0, 1] (ink = 1) or PIL images; a style is a vector
``(style_dim,)``. Every random choice comes from a ``seed``; how the model draws (temperature,
legibility check, sampler) is a :class:`~numgen.models.sampling.Sampling`, the model's own
unless one is given. The layout of a number lives in
:mod:`numgen.layout`, reading pictures in :mod:`numgen.pictures`.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from numgen import generate, glyphs, legibility, outline
from numgen.data import to_uint8
from numgen.errors import ComposeError
from numgen.hub import load
from numgen.layout import TOUCHING, Layout, draw_layout, hands, lay_out, resize_about_centre
from numgen.models import Generator
from numgen.models.sampling import Sampling
from numgen.pictures import centre_like_mnist, image_to_ink, read_digits
from numgen.recognizer import Recognizer

MAX_DIGITS = 64  # the longest text one call writes, in characters
DIGITS = glyphs.DIGITS
CHARACTERS = glyphs.CHARACTERS  # digits, . , - + / : ( ) and space
INKS = ("light", "dark")  # white ink on black as MNIST, or dark ink on white paper
# The bundled model that writes by default: onestep, a flow distilled into one network evaluation
# (closer to real digits than the bundled flow, and a reader trained on its numbers reads real
# ones better: bench/results/sharp_onestep_floor.md, ocr_transfer_beta_seed0.md), at 2-3 times the
# flow's digits/s.
# "flow" copies a hand from a picture more closely; "cvae" draws ~30 times faster, softer.
DEFAULT_WRITER = "onestep"


# --- checks --------------------------------------------------------------------------------------


def check_model(model: Generator) -> Generator:
    """The model itself, if it is conditional (it must be told which digit to draw)."""
    if not model.conditional:
        raise ComposeError(
            f"writing chosen digits needs a conditional model (a onestep, a flow or a cvae), "
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
    """One handwriting style drawn with ``seed`` from N(0, T² I), T the model's temperature
    (``model.sampling.temperature``) unless given: ``(style_dim,)``."""
    return generate.draw_styles(model, 1, seed, temperature)[0]


def digits(
    model: Generator, digit: int, n: int, seed: int = 0, sampling: Sampling | None = None,
    stats: dict[str, int] | None = None, checker: legibility.Checker | None = None,
) -> np.ndarray:  # fmt: skip
    """``n`` drawings of ``digit`` in ``n`` styles drawn with ``seed`` (as :func:`style_latent`
    draws them, at ``sampling``'s temperature; a style whose drawing fails its legibility check
    by ``checker`` is redrawn, see :mod:`numgen.legibility`, which counts its redraws into
    ``stats``): ``(n, 28, 28)`` in [0, 1]."""
    check_model(model)
    if digit not in range(10):
        raise ComposeError(f"digit={digit}: choose a digit from 0 to 9")
    if n < 1:
        raise ComposeError(f"n={n}: ask for at least one digit")
    sampling = model.sampling if sampling is None else sampling
    styles = legibility.stream(model, n, seed, sampling.temperature)
    return legibility.draw_checked(
        model, styles, np.full(n, digit), np.ones(n, int), generate.digit_seeds(seed, n),
        stats=stats, sampling=sampling, checker=checker,
    )  # fmt: skip


def morph(
    model: Generator, start: int, end: int, steps: int = 10,
    style: np.ndarray | None = None, end_style: np.ndarray | None = None,
    sampling: Sampling | None = None,
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
    return generate.draw(model, (1 - t) * a + t * b, soft_labels, seeds, sampling)


# --- writing a number ----------------------------------------------------------------------------


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
    seeds: np.ndarray, rounds: int = legibility.ROUNDS, sampling: Sampling | None = None,
    checker: legibility.Checker | None = None,
) -> list[tuple[np.ndarray, list[tuple[int, int]]]]:  # fmt: skip
    """Canvases of many numbers with ONE draw call for all their digits (and one for each round
    of the legibility check).

    ``texts[i]`` is written in style ``styles(0, [i])`` (see :func:`legibility.draw_checked`:
    every digit of a number shares its number's style, redrawn as a whole if any digit is
    misread) with jitter ``layouts[i]``; ``seeds`` holds one int64 per character of all texts,
    in order (a digit's seed for the model, another character's for its jitter), drawn with
    ``sampling`` (default: the model's) and checked by ``checker``. Characters other than digits are drawn in their number's hand (:func:`glyphs.cells`). Returns
    :func:`lay_out`'s ``(canvas, boxes)`` for each number.
    """
    chars = "".join(texts)
    codes = np.frombuffer(chars.encode(), dtype=np.uint8)
    is_digit = (codes >= ord("0")) & (codes <= ord("9"))
    counts = [sum(c in DIGITS for c in text) for text in texts]
    scales = np.concatenate([layout.scales for layout in layouts])
    drawn = legibility.draw_checked(
        model, styles, codes[is_digit] - ord("0"), np.array(counts), seeds[is_digit], rounds,
        sampling=sampling, checker=checker,
    )  # fmt: skip
    cells = glyphs.cells(texts, resize_about_centre(drawn, scales[is_digit]), scales, seeds)
    ends = np.cumsum([len(t) for t in texts])
    return [
        lay_out(cells[end - len(text) : end], layout, text)
        for end, text, layout in zip(ends, texts, layouts, strict=True)
    ]


def write(
    model: Generator, text: str, style: np.ndarray | None = None, style_seed: int = 0, seed: int = 0,
    height: int = 28, ink: str = "light", touching: float = TOUCHING,
    sampling: Sampling | None = None, checker: legibility.Checker | None = None,
) -> Image.Image:  # fmt: skip
    """The number ``text`` written in one handwriting style, as an "L" image ``height`` tall;
    its characters other than digits (``CHARACTERS``) drawn in that hand, with ``sampling``
    (default: the model's), checked by ``checker`` (default: the bundled checker).

    The style is ``style`` (``(style_dim,)``, e.g. from :func:`style_from_image`), kept as given,
    or else the one drawn with ``style_seed`` (redrawn from that seed's stream if the model's
    legibility check misreads a digit). The writer's layout habits (:class:`numgen.layout.Hand`:
    size, spacing, baseline drift, and how often digits touch, ``touching`` on average over
    hands) come with the style seed, or with ``seed`` for a given style; ``seed`` draws the
    jitter of sizes, heights and gaps about them (and each digit's own randomness, for families
    that have some).
    """
    check_model(model)
    text = check_text(text)
    sampling = model.sampling if sampling is None else sampling
    if style is None:
        styles = legibility.seeded(model, np.array([style_seed]), sampling.temperature)
        rounds = legibility.ROUNDS
    else:
        styles, rounds = legibility.given(check_style(model, style)[None]), 0
    hand = hands(np.array([seed if style is not None else style_seed]), touching)
    layout = draw_layout(np.random.default_rng(seed), text, hand)
    seeds = generate.digit_seeds(seed, len(text))
    [(canvas, _)] = render(model, [text], styles, [layout], seeds, rounds, sampling, checker)
    return to_picture(canvas, height, ink)


# --- a style from an image -----------------------------------------------------------------------


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
    """A conditional model ready to write: ``Writer.from_pretrained().write("2026")``. It draws
    with ``sampling``, the model's own unless given (the model itself is never changed), and
    checks its digits' legibility with ``checker`` (default: the bundled checker)."""

    def __init__(
        self, model: Generator, recognizer: Recognizer | None = None,
        sampling: Sampling | None = None, checker: legibility.Checker | None = None,
    ) -> None:  # fmt: skip
        self.model = check_model(model)
        self.sampling = model.sampling if sampling is None else sampling
        self.checker = checker
        self._recognizer = recognizer  # loaded on first use by style_from_image

    @classmethod
    def from_pretrained(cls, name_or_path: str = DEFAULT_WRITER, device: str = "cpu") -> Writer:
        """A writer over a bundled model name or a model/run directory."""
        return cls(load(name_or_path, device))

    def style(self, seed: int) -> np.ndarray:
        """The style drawn with ``seed``: ``(style_dim,)``. (``write(text, style_seed=seed)``
        starts from it, and redraws it if the model's legibility check misreads a digit.)"""
        return style_latent(self.model, seed, self.sampling.temperature)

    def digits(self, digit: int, n: int = 16, seed: int = 0) -> np.ndarray:
        """``n`` drawings of ``digit`` in varied styles: ``(n, 28, 28)`` in [0, 1]."""
        return digits(self.model, digit, n, seed, self.sampling, checker=self.checker)

    def write(
        self, text: str, style: np.ndarray | None = None, style_seed: int = 0, seed: int = 0,
        height: int = 28, ink: str = "light", touching: float = TOUCHING,
    ) -> Image.Image:  # fmt: skip
        """The number ``text`` in one style, as an "L" image (see :func:`write`)."""
        return write(
            self.model, text, style, style_seed, seed, height, ink, touching,
            self.sampling, self.checker,
        )  # fmt: skip

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
        return morph(self.model, start, end, steps, style, end_style, self.sampling)
