"""The one interface every model family answers, so that the rest of numgen never asks which
family it holds.

numgen asks a generator the same few things, whatever is inside it (a latent and a decoder, or a
velocity field and an ODE sampler):

- ``loss(x, labels, generator)``: the training objective's parts, for the training loop;
- ``draw(labels, styles, seeds)``: digits for given labels in given handwriting styles;
- ``encode_style(images, labels)``: the style of given pictures (where ``can_encode_style``);
- and what it supports: ``conditional`` (labels choose the digit), ``has_latent`` (a latent
  space with ``encode``/``decode``: a VAE's, to decode points of, reconstruct and plot), and
  ``has_latent_plane`` (that latent is a 2-D plane to explore and tile: the seed's 2-D VAE).

A *style* is a vector of ``style_dim`` numbers. How to draw is a value, ``model.sampling``
(:class:`numgen.models.sampling.Sampling`, saved with the weights) passed with each call: styles
are drawn from N(0, T² I) with its ``temperature`` T, and its ``check`` threshold, if any, has
:mod:`numgen.legibility` redraw styles whose digits a second recognizer misreads. Every digit of
a number shares its number's style. ``seeds`` fix the rest of a digit's randomness one digit at
a time, so a digit's pixels depend only on its (label, style, seed) — never on what else was
drawn in the same batch.

Models are maths: they never load or save themselves (``numgen.hub`` does, above them).
Images are tensors ``(N, 1, 28, 28)`` with values in [0, 1]; labels are digits ``(N,)`` or
``(N, num_classes)`` float weights that blend digits (morphs).
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from numgen.errors import ConfigError
from numgen.models.sampling import Sampling


class Generator(nn.Module):
    """Base class of numgen's model families (see the module docstring for the contract)."""

    config: object  # the family's config dataclass: kind, sizes, ...; saved as config.json
    conditional: bool = False  # labels choose the digit
    can_encode_style: bool = False  # encode_style works (style from a picture)
    has_latent: bool = False  # encode(x, labels) -> (mu, logvar) and decode(z, labels) exist
    wants_reader: bool = False  # training gives it a digit reader first (use_reader)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def style_dim(self) -> int:
        """The length of a style vector."""
        raise NotImplementedError

    @property
    def has_latent_plane(self) -> bool:
        """Whether the style space is a 2-D plane of digits to explore (decode a point, tile a
        manifold, scatter encodings)."""
        return False

    @property
    def sampling(self) -> Sampling:
        """How this model draws by default, as saved with its weights."""
        return Sampling()

    def sampling_with(
        self, steps: int | None = None, guidance: float | None = None, solver: str | None = None,
        check: bool = True, precision: str | None = None,
    ) -> Sampling:  # fmt: skip
        """The model's :attr:`sampling` with the options a caller gave (None: the model's);
        ``check=False`` turns the legibility check off. Steps, guidance and solver apply to the
        families that integrate an ODE; one that draws in one pass refuses them."""
        if (steps, guidance, solver) != (None, None, None):
            raise ConfigError(
                f"a {self.config.kind} model draws in one pass: steps, guidance and solver "
                "apply to flow models"
            )
        sampling = self.sampling if check else replace(self.sampling, check=None)
        return sampling if precision is None else replace(sampling, precision=precision)

    def adopt(self, base: Generator) -> None:
        """Take over the weights of a trained model this one builds on (see ``train(base=...)``)."""
        raise ValueError(f"a {type(self).__name__} builds on no other model")

    def end_epoch(self) -> None:
        """Work the family does once at the end of each training epoch, before its checkpoint is
        written (the onestep fits its balanced anchors); none by default."""

    def loss(
        self, x: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None,
        kl_weight: float | None = None,
    ) -> dict[str, torch.Tensor]:  # fmt: skip
        """The training objective on a batch ``x`` ``(B, 1, 28, 28)``: a dict of scalar parts
        averaged over the batch, whose ``"loss"`` is minimised. ``kl_weight`` overrides the
        weight of a KL term (the training loop's warm-up) in families that have one."""
        raise NotImplementedError

    def draw(
        self, labels: torch.Tensor | None, styles: torch.Tensor, seeds: torch.Tensor | None = None,
        sampling: Sampling | None = None,
    ) -> torch.Tensor:  # fmt: skip
        """Digits ``(N, 1, 28, 28)`` in [0, 1] for ``labels`` in ``styles`` ``(N, style_dim)``,
        with ``seeds`` ``(N,)`` int64 fixing any further randomness digit by digit, drawn with
        ``sampling`` (default: :attr:`sampling`)."""
        raise NotImplementedError

    def encode_style(self, images: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """The styles ``(N, style_dim)`` of pictures ``(N, 1, 28, 28)`` in [0, 1]."""
        raise NotImplementedError(f"a {type(self).__name__} cannot read a style from a picture")


def label_weights(
    labels: torch.Tensor | None, n: int, classes: int, device: torch.device
) -> torch.Tensor:
    """Labels of ``n`` items as float weights ``(n, classes)`` on ``device``: one-hot rows for
    digits (one digit, or ``(n,)``), or ``(n, classes)`` float weights passed through (morphs);
    a ValueError naming what is wrong otherwise. Every conditional family reads its labels here."""
    if labels is None:
        raise ValueError("a conditional model needs labels: a (N,) tensor of digits 0-9")
    labels = torch.as_tensor(labels, device=device)
    if labels.is_floating_point() and labels.ndim == 2:  # (n, classes) blends, for morphs
        if labels.shape != (n, classes):
            raise ValueError(
                f"soft labels must have shape ({n}, {classes}), got {tuple(labels.shape)}"
            )
        return labels.float()
    labels = labels.long().reshape(-1)
    if len(labels) == 1 and n > 1:
        labels = labels.expand(n)
    if len(labels) != n:
        raise ValueError(f"got {len(labels)} labels for a batch of {n}")
    if labels.min() < 0 or labels.max() >= classes:
        raise ValueError(f"labels must lie in 0..{classes - 1}")
    return torch.nn.functional.one_hot(labels, classes).float()
