"""The styles of the one-step family: where a sampled style ``s ~ N(0, T² I)`` lands in each
class's whitened CVAE latent space before the teacher's start is drawn from it.

- :class:`StylePrior`: a small conditional normalising flow (affine couplings as RealNVP, Dinh et
  al. 2017, https://arxiv.org/abs/1605.08803), fitted by maximum likelihood to the whitened
  posterior means of the training digits of each class; with no layers, the identity (the
  teacher's one Gaussian per class).
- :class:`StyleAnchors`: the whitened styles of training digits, kept per class as training
  passes them, towards the nearest of which each sampled style is pulled a share of the way. One
  Gaussian per class puts mass between the classes (a 4 that closes like a 9) and off the data;
  pulled towards a real digit's style, a sampled style lands where digits are, and the same base
  point still gives every digit of a number a nearby place in its class: one hand.

  "Nearest" favours a few kept styles: in 16 dimensions some points are the nearest neighbour of
  far more of space than others (hubs), so with 6,000 kept styles a class's most-chosen tenth
  took 21-31 % of the draws and 1-10 % were never chosen. *Balanced* anchors fix that with an
  offset per kept style: a style goes to the kept one that minimises ``|s - a|² - offset(a)``
  (the cells of a power diagram), and the offsets are fitted so that every cell holds the same
  share of N(0, T² I) — the semi-discrete optimal transport from the sampler to the kept styles
  (Aurenhammer et al. 1998; fitted by stochastic ascent on its dual, as Genevay et al. 2016,
  https://arxiv.org/abs/1605.08527). Each real style is then drawn about equally often, as in
  the data, and a style still goes to one close by, so a number keeps one hand.
- :func:`check_anchor_settings`: what a config's kept-style settings must be, together.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from numgen.errors import ConfigError


class Coupling(nn.Module):
    """An affine coupling: half of the coordinates (every other one, from ``parity``) are scaled
    and shifted by amounts a small network reads from the other half and the label weights."""

    def __init__(self, dim: int, hidden: int, classes: int, parity: int) -> None:
        super().__init__()
        self.parity = parity
        moved = len(range(parity, dim, 2))
        self.net = nn.Sequential(
            nn.Linear(dim - moved + classes, hidden), nn.SiLU(),
            nn.Linear(hidden, hidden), nn.SiLU(),
            nn.Linear(hidden, 2 * moved),
        )  # fmt: skip
        nn.init.zeros_(self.net[-1].weight)  # start as the identity
        nn.init.zeros_(self.net[-1].bias)

    def _scale_shift(self, given: torch.Tensor, onehot: torch.Tensor) -> tuple[torch.Tensor, ...]:
        log_scale, shift = self.net(torch.cat([given, onehot], dim=1)).chunk(2, dim=1)
        return torch.tanh(log_scale), shift  # |log scale| < 1: a gentle, stable step

    def forward(self, x: torch.Tensor, onehot: torch.Tensor, inverse: bool = False) -> tuple:
        """(the moved x, log |det| of the step) — from the base to the data, or back."""
        p = self.parity
        moved, given = x[:, p::2], x[:, 1 - p :: 2]
        log_scale, shift = self._scale_shift(given, onehot)
        if inverse:
            moved, log_det = (moved - shift) * torch.exp(-log_scale), -log_scale.sum(1)
        else:
            moved, log_det = moved * torch.exp(log_scale) + shift, log_scale.sum(1)
        out = torch.empty_like(x)
        out[:, p::2], out[:, 1 - p :: 2] = moved, given
        return out, log_det


class StylePrior(nn.Module):
    """A conditional normalising flow between styles ``s ~ N(0, I)`` ``(N, d)`` and each class's
    whitened latents ``w`` ``(N, d)``; with no layers it is the identity (the teacher's
    Gaussians)."""

    def __init__(self, dim: int, layers: int, hidden: int, classes: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(Coupling(dim, hidden, classes, i % 2) for i in range(layers))

    def forward(self, s: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        """Styles -> whitened latents."""
        for layer in self.layers:
            s, _ = layer(s, onehot)
        return s

    def inverse(self, w: torch.Tensor, onehot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Whitened latents -> (styles, log |det ds/dw|)."""
        log_det = torch.zeros(len(w), device=w.device, dtype=w.dtype)
        for layer in reversed(self.layers):
            w, step = layer(w, onehot, inverse=True)
            log_det = log_det + step
        return w, log_det

    def nll(self, w: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood of ``w`` per item, in nats (without the constant d/2 log 2π)."""
        s, log_det = self.inverse(w, onehot)
        return 0.5 * s.pow(2).sum(1) - log_det


def check_anchor_settings(
    anchors: int, pull: float, balance: bool, floor: float, loose_pull: float
) -> None:
    """A ConfigError naming the first kept-style setting of a config (its ``anchors``,
    ``anchor_pull``, ``balance_anchors``, ``anchor_floor``, ``loose_pull``) that is out of range
    or needs another it lacks."""
    if not (math.isfinite(pull) and 0 <= pull <= 1):
        raise ConfigError(f"anchor_pull={pull}: must be between 0 and 1")
    if balance and anchors == 0:
        raise ConfigError(
            "balance_anchors: only kept styles can be balanced; keep some with anchors > 0"
        )
    if not (math.isfinite(floor) and 0 <= floor < 1):
        raise ConfigError(f"anchor_floor={floor}: must be from 0 to below 1")
    if floor > 0 and pull == 0:
        raise ConfigError(
            f"anchor_floor={floor}: only styles drawn towards kept ones can be read by them; "
            "pull them with anchor_pull > 0 (e.g. 0.8)"
        )
    if not (math.isfinite(loose_pull) and 0 <= loose_pull < 1):
        raise ConfigError(f"loose_pull={loose_pull}: must be from 0 to below 1")
    if loose_pull > 0 and not loose_pull < pull:
        raise ConfigError(
            f"loose_pull={loose_pull}: a looser pull than anchor_pull={pull} for the kept styles "
            "that read surely; give a smaller share (e.g. 0.65 with anchor_pull 0.9)"
        )
    if pull > 0 and anchors == 0:
        raise ConfigError(
            f"anchor_pull={pull}: styles can only be pulled towards kept ones; "
            "keep some with anchors > 0 (e.g. 6000 per class)"
        )


class StyleAnchors(nn.Module):
    """Up to ``per_class`` whitened styles ``(d,)`` of real digits of each class, the first that
    training shows it (:meth:`keep`), and the pull of sampled styles towards them (:meth:`pull`);
    ``balanced``: with an offset per kept style (:meth:`balance`, see the module docstring);
    ``own_pulls``: with a share of the way to pull for each kept style (:meth:`set_pulls`), in
    place of the one share :meth:`pull` is given. Kept as buffers, so they are saved, loaded and
    resumed with the model's weights."""

    def __init__(
        self, dim: int, per_class: int, classes: int, balanced: bool = False,
        own_pulls: bool = False,
    ) -> None:  # fmt: skip
        super().__init__()
        self.register_buffer("styles", torch.zeros(classes, per_class, dim))
        self.register_buffer("count", torch.zeros(classes, dtype=torch.int64))
        # |s - a|² - offset(a) chooses the kept style; zeros: the nearest. Saved only when
        # balanced, so an unbalanced model's files stay as they were.
        self.register_buffer("offsets", torch.zeros(classes, per_class), persistent=balanced)
        # each kept style's own share of the way; below 0: not set, the share pull() is given.
        # Saved only when used, as the offsets are.
        self.own_pulls = own_pulls
        self.register_buffer("pulls", torch.full((classes, per_class), -1.0), persistent=own_pulls)
        # whether styles were kept since the offsets were last fitted (a fresh or loaded model's
        # are fitted again: the same kept styles give the same offsets)
        self.unfitted = True

    @torch.no_grad()
    def keep(self, whitened: torch.Tensor, classes: torch.Tensor) -> None:
        """Keep the styles ``(N, d)`` of digits of ``classes`` ``(N,)``, in order, where their
        class has room left."""
        room = self.styles.shape[1]
        for c in classes.unique().tolist():
            kept = int(self.count[c])
            new = whitened[classes == c][: room - kept]
            self.styles[c, kept : kept + len(new)] = new.to(self.styles.dtype)
            self.count[c] += len(new)
            self.unfitted |= len(new) > 0

    def choose(self, styles: torch.Tensor, c: int) -> torch.Tensor:
        """For styles ``(N, d)`` of class ``c``, the index of the kept style each goes to: the
        least ``|s - a|² - offset(a)``, without the ``|s|²`` all share (one matrix product)."""
        n = int(self.count[c])
        kept = self.styles[c, :n]
        bias = kept.pow(2).sum(1) - self.offsets[c, :n]
        with torch.autocast(styles.device.type, enabled=False):  # float32 under bf16 drawing
            return torch.addmm(bias[None], styles.float(), kept.T, alpha=-2).argmin(dim=1)

    @torch.no_grad()
    def pull(
        self, styles: torch.Tensor, classes: torch.Tensor, share: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each style ``(N, d)`` moved ``share`` of the way to the kept style of its class
        ``(N,)`` that it goes to (the nearest, unless balanced), and the index of that kept style
        within its class ``(N,)``; a class with none kept leaves its styles where they are
        (index -1)."""
        out = styles.clone()
        chosen = torch.full((len(styles),), -1, dtype=torch.long, device=styles.device)
        for c in classes.unique().tolist():
            if self.count[c] == 0:
                continue
            mine = classes == c
            out[mine], chosen[mine] = self.pull_class(styles[mine], c, share)
        return out, chosen

    @torch.no_grad()
    def pull_class(self, styles: torch.Tensor, c: int, share: float) -> tuple[torch.Tensor, ...]:
        """Styles ``(N, d)`` of class ``c`` (some kept) pulled as :meth:`pull` pulls them, and the
        index of the kept style each went to."""
        chosen = self.choose(styles, c)
        if self.own_pulls:  # each kept style's own share, where one is set
            own = self.pulls[c, chosen]
            share = torch.where(own >= 0, own, share).to(styles.dtype)[:, None]
        return torch.lerp(styles, self.styles[c, chosen], share), chosen

    @torch.no_grad()
    def set_pulls(self, c: int, shares: torch.Tensor | None) -> None:
        """Each kept style of class ``c`` pulls its styles ``shares`` ``(count[c],)`` of the way
        (None: the share :meth:`pull` is given, for all of them)."""
        self.pulls[c].fill_(-1.0)
        if shares is not None:
            self.pulls[c, : len(shares)] = shares

    @torch.no_grad()
    def drop(self, c: int, keep: torch.Tensor) -> None:
        """Keep only the kept styles of class ``c`` where ``keep`` ``(count[c],)`` is true, in
        order; their offsets (:meth:`balance`) and own pulls are to be fitted again."""
        kept = self.styles[c, : int(self.count[c])][keep]
        self.styles[c].zero_()
        self.styles[c, : len(kept)] = kept
        self.offsets[c].zero_()
        self.pulls[c].fill_(-1.0)
        self.count[c] = len(kept)
        self.unfitted = True

    @torch.no_grad()
    def balance(
        self, temperature: float, rounds: int = 60, samples: int = 12_000, seed: int = 0
    ) -> None:
        """Fit the offsets so that each kept style of a class is chosen by an equal share of
        styles ``s ~ N(0, T² I)``: ``rounds`` steps of stochastic ascent on the dual of the
        semi-discrete transport problem (each offset rises by how much its cell holds less than
        its share of ``samples`` fresh styles, in units of its squared distance to the nearest
        other kept style, with a falling step), seeded, so the same kept styles give the same
        offsets. ~100 s for 10 × 6,000 kept styles on 2 CPU cores."""
        generator = torch.Generator().manual_seed(seed)
        dim = self.styles.shape[2]
        for c in range(len(self.count)):
            n = int(self.count[c])
            self.offsets[c].zero_()
            if n < 2:
                continue
            gap = self._neighbour_gaps(c)
            for step in range(rounds):
                styles = torch.randn(samples, dim, generator=generator) * temperature
                styles = styles.to(self.styles.device)
                chosen = torch.cat([self.choose(part, c) for part in styles.split(2048)])
                held = torch.bincount(chosen, minlength=n).to(self.offsets) / samples
                rate = gap * n * (1 - step / rounds + 0.05)
                self.offsets[c, :n] += rate * (1.0 / n - held)
        self.unfitted = False

    def _neighbour_gaps(self, c: int) -> torch.Tensor:
        """The squared distance from each kept style of class ``c`` to its nearest other."""
        kept = self.styles[c, : int(self.count[c])]
        nearest = []
        for start in range(0, len(kept), 2048):
            part = torch.cdist(kept[start : start + 2048], kept).pow(2)
            part[torch.arange(len(part)), torch.arange(start, start + len(part))] = torch.inf
            nearest.append(part.min(dim=1).values)
        return torch.cat(nearest)
