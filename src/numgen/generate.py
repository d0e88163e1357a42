"""From a trained model to digits: styles, digits drawn in them, and — for models with a latent
to look into (VAEs) — decoded latent points, grids, encodings and reconstructions.

Everything here returns NumPy arrays of images ``(N, 28, 28)`` float32 in [0, 1] (ink = 1), so
plots, the CLI and the web app never handle tensors. Every random function takes a ``seed``.
:func:`draw_styles` and :func:`draw` work for every model family (:class:`numgen.models.Generator`);
the latent functions need a VAE.
"""

from __future__ import annotations

import numpy as np
import torch

from numgen.data import Digits, to_tensor
from numgen.errors import ConfigError
from numgen.models import VAE, Generator
from numgen.models.sampling import Sampling, passes, precision_context


def _labels(
    model: Generator, labels: int | np.ndarray | list[int] | None, n: int
) -> torch.Tensor | None:
    """Digit labels for ``n`` items as a tensor on the model's device (None for plain VAEs):
    one digit, ``(n,)`` digits, or ``(n, num_classes)`` float weights that blend digits."""
    if not model.conditional:
        return None
    if labels is None:
        raise ConfigError("this model is conditioned on the digit: give the label(s) to draw")
    if np.ndim(labels) == 2:  # (n, num_classes) float weights blending digits, for morphs
        return torch.as_tensor(labels, dtype=torch.float32).to(model.device)
    labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
    if len(labels) == 1:
        labels = labels.expand(n)
    return labels.to(model.device)


def decode(model: VAE, z: np.ndarray | torch.Tensor, labels=None) -> np.ndarray:
    """Latent points ``(N, latent_dim)`` -> images ``(N, 28, 28)`` in [0, 1], in batches: a VAE's
    :func:`draw`, whose style is its latent."""
    z = np.asarray(z, dtype=np.float32)
    if z.ndim != 2 or z.shape[1] != model.config.latent_dim:
        raise ConfigError(
            f"latent points must have shape (N, {model.config.latent_dim}), got {tuple(z.shape)}"
        )
    return draw(model, z, labels)


@torch.inference_mode()
def encode(model: VAE, images: np.ndarray, labels=None) -> np.ndarray:
    """Images uint8 ``(N, 28, 28)`` (or float in [0, 1]) -> posterior means ``(N, latent_dim)``."""
    x = (
        to_tensor(images)
        if images.dtype == np.uint8
        else torch.from_numpy(images).float().unsqueeze(1)
    )
    y = _labels(model, labels, len(x))
    out = []
    for rows in passes(len(x), model.device):
        mu, _ = model.encode(x[rows].to(model.device), None if y is None else y[rows])
        out.append(mu)
    return torch.cat(out).cpu().numpy()


def latent_grid(n: int = 30, lo: float = -1.5, hi: float = 1.5) -> np.ndarray:
    """An ``n``×``n`` grid of 2-D points over [lo, hi]², shape ``(n*n, 2)``, in reading order:
    row 0 is the top (largest y), columns run from small to large x — as the picture shows it."""
    if n < 1:
        raise ConfigError(f"n={n}: the grid needs at least 1 point per side")
    if not lo < hi:
        raise ConfigError(f"range [{lo}, {hi}]: the low end must be below the high end")
    xs = np.linspace(lo, hi, n)
    ys = np.linspace(hi, lo, n)
    return np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2).astype(np.float32)


def manifold(model: VAE, n: int = 30, lo: float = -1.5, hi: float = 1.5, labels=None) -> np.ndarray:
    """Decoded ``n``×``n`` grid over the first two latent dimensions (others held at 0):
    images ``(n, n, 28, 28)``; ``[0, 0]`` is the top-left (x=lo, y=hi)."""
    grid = latent_grid(n, lo, hi)
    z = np.zeros((len(grid), model.config.latent_dim), dtype=np.float32)
    z[:, : min(2, model.config.latent_dim)] = grid[:, : model.config.latent_dim]
    return decode(model, z, labels).reshape(n, n, 28, 28)


def draw_styles(
    model: Generator, n: int, seed: int = 0, temperature: float | None = None
) -> np.ndarray:
    """``n`` handwriting styles drawn from N(0, T² I) with a fixed seed: ``(n, style_dim)``.
    T is the model's own (``model.sampling.temperature``) unless given (1 = the prior itself)."""
    generator = torch.Generator().manual_seed(seed)
    t = model.sampling.temperature if temperature is None else temperature
    return torch.randn(n, model.style_dim, generator=generator).numpy() * np.float32(t)


def seeded_styles(
    model: Generator, seeds: np.ndarray, temperature: float | None = None
) -> np.ndarray:
    """One style per seed, ``(len(seeds), style_dim)``: style i is ``draw_styles(model, 1,
    seeds[i], temperature)[0]``, as ``numgen write --style-seed`` draws a number's style."""
    generator = torch.Generator()
    out = torch.empty(len(seeds), model.style_dim)
    for row, seed in enumerate(np.asarray(seeds).tolist()):
        torch.randn(
            1, model.style_dim, generator=generator.manual_seed(seed), out=out[row : row + 1]
        )
    t = model.sampling.temperature if temperature is None else temperature
    return out.numpy() * np.float32(t)


def digit_seeds(seed: int, n: int) -> np.ndarray:
    """``n`` per-digit seeds (int64) fixed by ``seed``: the rest of each digit's randomness."""
    return np.random.default_rng(seed).integers(0, 2**62, size=n, dtype=np.int64)


def uniforms(seed: int, indices: np.ndarray, slots: int) -> np.ndarray:
    """Uniform numbers in [0, 1) ``(len(indices), slots)``, each a hash of (seed, index, slot):
    SplitMix64's finaliser (Steele et al., OOPSLA 2014) over a chained key, 53 bits each."""

    def mix(x: np.ndarray) -> np.ndarray:
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))

    golden = np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):  # arithmetic modulo 2**64 is the point
        key = mix(np.uint64(seed % 2**64) * golden + np.asarray(indices, np.uint64))
        words = mix(key[:, None] + (np.arange(1, slots + 1, dtype=np.uint64) * golden)[None, :])
    return (words >> np.uint64(11)).astype(np.float64) * 2.0**-53


@torch.inference_mode()
def draw(
    model: Generator, styles: np.ndarray, labels=None, seeds: np.ndarray | None = None,
    sampling: Sampling | None = None,
) -> np.ndarray:  # fmt: skip
    """Digits in ``styles`` ``(N, style_dim)`` -> images ``(N, 28, 28)`` in [0, 1], by any model
    family, in :func:`~numgen.models.sampling.passes`. ``labels`` as in :func:`decode`; ``seeds``
    ``(N,)`` int64 fix each digit's own randomness (default: :func:`digit_seeds` of 0);
    ``sampling``: the model's unless given."""
    styles = torch.as_tensor(np.asarray(styles, dtype=np.float32))
    if styles.ndim != 2 or styles.shape[1] != model.style_dim:
        raise ConfigError(
            f"styles must have shape (N, {model.style_dim}), got {tuple(styles.shape)}"
        )
    if len(styles) == 0:
        return np.zeros((0, 28, 28), np.float32)
    seeds = torch.as_tensor(digit_seeds(0, len(styles)) if seeds is None else seeds)
    y = _labels(model, labels, len(styles))
    precision = (model.sampling if sampling is None else sampling).precision
    with precision_context(precision, model.device):
        out = [
            model.draw(
                None if y is None else y[rows], styles[rows].to(model.device), seeds[rows], sampling
            )
            for rows in passes(len(styles), model.device)
        ]
    return torch.cat(out).squeeze(1).float().cpu().numpy()


def sample(
    model: Generator, n: int = 64, seed: int = 0, labels=None, sampling: Sampling | None = None
) -> np.ndarray:
    """``n`` digits drawn from the prior (styles at temperature 1, whatever ``sampling`` says;
    its sampler the model's unless given): ``(n, 28, 28)`` in [0, 1]. A conditional model draws
    ``labels`` (one digit or one per sample; default 0..9 in turn)."""
    if model.conditional and labels is None:
        labels = np.arange(n) % model.config.num_classes
    styles = draw_styles(model, n, seed, temperature=1.0)
    return draw(model, styles, labels, digit_seeds(seed, n), sampling)


def reconstruct(model: VAE, digits: Digits) -> np.ndarray:
    """Decode each digit's posterior mean: ``(N, 28, 28)`` in [0, 1]."""
    labels = digits.labels if model.conditional else None
    return decode(model, encode(model, digits.images, labels), labels)


def project_2d(z: np.ndarray) -> tuple[np.ndarray, tuple[str, str]]:
    """Points for a 2-D picture of a latent space and the names of its axes: the latent itself when
    it is 2-D, else its projection on the first two principal components (PCA)."""
    if z.shape[1] == 2:
        return z, ("z[0]", "z[1]")
    if z.shape[1] == 1:
        return np.concatenate([z, np.zeros_like(z)], axis=1), ("z[0]", "(1-D latent)")
    centred = z - z.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    share = s**2 / np.sum(s**2)
    axes = (f"PC 1 ({share[0]:.0%} of variance)", f"PC 2 ({share[1]:.0%} of variance)")
    return centred @ vt[:2].T, axes
