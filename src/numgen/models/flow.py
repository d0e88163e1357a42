"""Flow matching: digits that look real, in few network evaluations.

A flow model moves a starting point ``x0`` to a digit ``x1`` along an ODE ``dx/dt = v(x, t)``
from t = 0 to t = 1, with the velocity field ``v`` a small U-Net. Training is conditional flow
matching with straight paths (rectified flow: Lipman et al. 2023, https://arxiv.org/abs/2210.02747;
Liu et al. 2022, https://arxiv.org/abs/2209.03003): for a pair (x0, x1) and t ~ U(0, 1),

    x_t = (1 - t) x0 + t x1,     loss = || v(x_t, t) - (x1 - x0) ||²,

and sampling integrates the ODE in a few steps (Euler, Heun or two-step Adams-Bashforth: see
:func:`numgen.models.sampling.integrate`). The label enters through a learnt embedding and is dropped for 10 %
of training examples, so the same network also gives the unconditional velocity for
classifier-free guidance (Ho & Salimans 2022, https://arxiv.org/abs/2207.12598):
``v = v_uncond + w (v_cond - v_uncond)``.

Two ways of holding a handwriting *style* (the ``start`` of the config):

- ``"cvae"`` (DiffuseVAE-style, Pandey et al. 2022, https://arxiv.org/abs/2201.00308): the flow
  refines a frozen conditional VAE's decode. The style is the CVAE's latent; the flow starts from
  ``x0 = decode(z, label) + sigma·noise`` and sees the decode as a second input channel, so the
  CVAE steers slant, width and thickness, and style-from-image is the CVAE's encoder. Each
  digit's latent is ``mean_d + L_d · style``, from a Gaussian fitted to the posterior means of the
  training digits of that class d (running moments kept as buffers), not from the prior: the
  prior's shell decodes to blurred or ambiguous digits, and a class's own distribution keeps a 4
  from drifting towards a 9. One style vector for a whole number still gives its digits one hand:
  the same whitened coordinates in each class's distribution.
- ``"noise"``: a class-conditional flow from N(0, I). The style is the starting noise itself
  (784 numbers); a picture's style is found by integrating the ODE backwards (inversion).

Images are ``(B, 1, 28, 28)`` in [0, 1]; labels ``(B,)`` digits or ``(B, 10)`` weights.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

import torch
import torch.nn.functional as F
from torch import nn

from numgen.config import check_fields
from numgen.errors import ConfigError
from numgen.models.base import Generator, label_weights
from numgen.models.pixels import despeckle, digit_noise
from numgen.models.sampling import Sampling, check_sampling, check_style_settings, integrate
from numgen.models.vae import CVAE, VAEConfig

STARTS = ("cvae", "noise")
LABEL_DROPOUT = 0.1  # share of training examples shown without their label (for guidance)


@dataclass
class FlowConfig:
    """Everything needed to rebuild a flow model; stored as ``config.json`` beside the weights."""

    kind: str = "flow"
    start: str = "cvae"  # "cvae": refine a CVAE's decode; "noise": flow from N(0, I)
    base: dict | None = None  # the refined CVAE's VAEConfig (start "cvae")
    channels: int = 12  # U-Net width at 28×28; 2× at 14×14 and 7×7
    sigma: float = 0.3  # start "cvae": noise added to the decode at t = 0
    steps: int = 4  # ODE steps when sampling
    solver: str = "euler"  # "euler" or "ab2" (1 evaluation a step), "heun" (2)
    guidance: float = 1.0  # classifier-free guidance weight w; 1 = plain conditional (no cost)
    temperature: float = 1.0  # styles ~ N(0, T² I)
    check: float | None = None  # numgen.legibility's threshold (chosen with the temperature)
    num_classes: int = 10

    def __post_init__(self) -> None:
        check_fields(self)
        if self.kind != "flow":
            raise ConfigError(f"kind={self.kind!r}: a flow config has kind 'flow'")
        if self.start not in STARTS:
            raise ConfigError(f"start={self.start!r}: choose one of {STARTS}")
        if self.start == "cvae":
            if not isinstance(self.base, dict):
                raise ConfigError("start='cvae' needs base: the config of the CVAE to refine")
            if self.base.get("kind") != "cvae":
                raise ConfigError(f"base kind={self.base.get('kind')!r}: the base must be a cvae")
            VAEConfig.from_dict(self.base)  # its own checks
        check_sampling(self.steps, self.guidance, self.solver)
        if not 1 <= self.channels <= 256:
            raise ConfigError(f"channels={self.channels}: must be between 1 and 256")
        if not (math.isfinite(self.sigma) and 0 <= self.sigma <= 10):
            raise ConfigError(f"sigma={self.sigma}: must be a number between 0 and 10")
        check_style_settings(self.temperature, self.check)

    @classmethod
    def from_dict(cls, values: dict) -> FlowConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ConfigError(f"unknown config keys {sorted(unknown)}; known keys: {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict:
        return asdict(self)


# --- the velocity field --------------------------------------------------------------------------


class FiLMConv(nn.Module):
    """3×3 conv, then a scale and shift per channel from the condition (FiLM), then SiLU.
    No normalisation layer: at these sizes it costs as much time as the conv on a CPU."""

    def __init__(self, in_ch: int, out_ch: int, cond_dim: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1)
        self.film = nn.Linear(cond_dim, 2 * out_ch)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(cond)[:, :, None, None].chunk(2, dim=1)
        if torch.is_grad_enabled():  # training: addcmul's backward made a flow step ~10 % slower
            return F.silu(self.conv(x) * (1 + scale) + shift)
        # drawing: one pass for the scale and shift, and the SiLU in place: at 28×28 these
        # element-wise passes over memory cost a CPU as much as the conv itself
        return F.silu(torch.addcmul(shift, self.conv(x), 1 + scale), inplace=True)


class VelocityUNet(nn.Module):
    """A lean U-Net: (B, c_in, 28, 28), t (B,), label weights (B, 10) -> velocity (B, 1, 28, 28).

        28×28, c  ──────────────────────────────────────── + ─► 3×3 conv ─► velocity
          │ 3×3 stride 2                                   ▲ 2×2 transposed conv
        14×14, 2c ─► 3×3 ──────────────────── + ─► 3×3 ────┘
          │ 3×3 stride 2                      ▲ 2×2 transposed conv
        7×7, 2c ─► 3×3 ───────────────────────┘

    Time and label enter every conv as FiLM scale/shift; skips are added, not concatenated. At
    c = 12 one pass costs ~7 MFLOP, so a few Euler steps stay cheap on a CPU (bench/sharp.py).
    """

    def __init__(self, in_channels: int, channels: int, num_classes: int) -> None:
        super().__init__()
        c, cond = channels, 4 * channels
        # Fixed (not learnt) frequencies, always made on the CPU from their own seed: on the meta
        # device, where checkpoint_checks builds a model to check a file, random ops import
        # sympy and torch._dynamo, ~1 s of every `numgen write`.
        seeded = torch.Generator().manual_seed(0)
        freqs = torch.randn(cond // 2, generator=seeded, device="cpu") * 4.0
        self.register_buffer("time_freqs", freqs)
        self.time_mlp = nn.Sequential(nn.Linear(cond, cond), nn.SiLU(), nn.Linear(cond, cond))
        self.label_embed = nn.Linear(num_classes, cond, bias=False)  # a zero vector = no label
        self.inp = FiLMConv(in_channels, c, cond)
        self.down14 = FiLMConv(c, 2 * c, cond, stride=2)
        self.mid14 = FiLMConv(2 * c, 2 * c, cond)
        self.down7 = FiLMConv(2 * c, 2 * c, cond, stride=2)
        self.mid7 = FiLMConv(2 * c, 2 * c, cond)
        self.up14 = nn.ConvTranspose2d(2 * c, 2 * c, 2, stride=2)
        self.merge14 = FiLMConv(2 * c, 2 * c, cond)
        self.up28 = nn.ConvTranspose2d(2 * c, c, 2, stride=2)
        self.out = nn.Conv2d(c, 1, 3, padding=1)
        nn.init.zeros_(self.out.weight)  # start as the zero velocity
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        angles = t[:, None] * self.time_freqs[None, :]  # Gaussian Fourier features of t
        cond = self.time_mlp(torch.cat([angles.sin(), angles.cos()], dim=1))
        cond = F.silu(cond + self.label_embed(labels))
        # when drawing, channels-last memory: oneDNN's convs read and write it without reordering
        # (bench/results/draw_speed.md); training through it measured slower on a CPU
        # (bench/results/train_configs_convs_always.md), so training keeps the default layout
        if not torch.is_grad_enabled():
            x = x.contiguous(memory_format=torch.channels_last)
        h28 = self.inp(x, cond)
        h14 = self.mid14(self.down14(h28, cond), cond)
        h7 = self.mid7(self.down7(h14, cond), cond)
        h14 = self.merge14(self.up14(h7) + h14, cond)
        return self.out(F.silu(self.up28(h14) + h28))


# --- the family ----------------------------------------------------------------------------------


class FlowModel(Generator):
    """A flow-matching generator (see the module docstring for the two designs)."""

    config_class = FlowConfig
    conditional = True
    can_encode_style = True

    def __init__(self, config: FlowConfig) -> None:
        super().__init__()
        self.config = config
        refine = config.start == "cvae"
        self.base = CVAE(VAEConfig.from_dict(config.base)) if refine else None
        if self.base is not None:
            self.base.requires_grad_(False)  # frozen: only the velocity field learns
            c, d = config.num_classes, self.base.config.latent_dim
            # running moments of each class's posterior means: the style distributions
            # (float64: they sum millions of digits over a run)
            self.register_buffer("moment_count", torch.zeros(c, dtype=torch.float64))
            self.register_buffer("moment_sum", torch.zeros(c, d, dtype=torch.float64))
            self.register_buffer("moment_outer", torch.zeros(c, d, d, dtype=torch.float64))
        self.velocity = VelocityUNet(2 if refine else 1, config.channels, config.num_classes)

    # -- what the rest of numgen asks -------------------------------------------------------------

    @property
    def style_dim(self) -> int:
        return self.base.config.latent_dim if self.base is not None else 28 * 28

    @property
    def sampling(self) -> Sampling:
        c = self.config
        return Sampling(c.temperature, c.check, c.steps, c.solver, c.guidance)

    def sampling_with(
        self, steps: int | None = None, guidance: float | None = None, solver: str | None = None,
        check: bool = True, precision: str | None = None,
    ) -> Sampling:  # fmt: skip
        check_sampling(steps, guidance, solver)
        changed = {"steps": steps, "guidance": guidance, "solver": solver}
        given = {name: value for name, value in changed.items() if value is not None}
        return replace(super().sampling_with(check=check, precision=precision), **given)

    def adopt(self, base: Generator) -> None:
        """Copy the weights of the trained CVAE this flow refines (before training)."""
        if self.base is None:
            raise ValueError("a flow that starts from noise refines no base model")
        if getattr(base, "config", None) is None or base.config.to_dict() != self.config.base:
            raise ValueError("the base model's config differs from the flow config's base")
        self.base.load_state_dict(base.state_dict())

    def loss(
        self, x: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None,
        kl_weight: float | None = None,
    ) -> dict[str, torch.Tensor]:  # fmt: skip
        """Flow-matching loss on a batch; ``kl_weight`` does not apply (no KL term)."""
        n = len(x)
        full = onehot = self._label_weights(labels, n)
        if self.training:  # drop labels at random, so guidance has an unconditional field
            keep = torch.rand(n, 1, generator=generator, device=x.device) >= LABEL_DROPOUT
            onehot = onehot * keep
        x0, extra = self._start(x, full, generator)
        t = torch.rand(n, generator=generator, device=x.device)
        xt = (1 - t)[:, None, None, None] * x0 + t[:, None, None, None] * x
        v = self.velocity(self._input(xt, extra), t, onehot)
        fm = F.mse_loss(v, x - x0, reduction="none").flatten(1).sum(1).mean()
        return {"loss": fm, "flow": fm}

    @torch.no_grad()
    def draw(
        self, labels: torch.Tensor | None, styles: torch.Tensor, seeds: torch.Tensor | None = None,
        sampling: Sampling | None = None,
    ) -> torch.Tensor:  # fmt: skip
        """Integrate the ODE from each style's start with ``sampling``'s steps, solver and
        guidance (default: the model's): ``(N, 1, 28, 28)`` in [0, 1]. ``seeds`` ``(N,)`` fix
        each digit's start noise (design "cvae"; default: seed 0 for all)."""
        sampling = self.sampling if sampling is None else sampling
        n = len(styles)
        styles = styles.to(self.device, torch.float32)
        onehot = self._label_weights(labels, n)
        if self.base is not None:
            extra = self.base.decode(self.latent(styles, onehot), onehot)
            x = extra + self.config.sigma * digit_noise(seeds, n, self.device)
        else:
            extra, x = None, styles.view(n, 1, 28, 28)
        return despeckle(self.integrate(x, extra, onehot, 0.0, 1.0, sampling))

    @torch.no_grad()
    def encode_style(self, images: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """Design "cvae": the posterior mean, whitened in its class's distribution; "noise": the
        ODE run backwards."""
        images = images.to(self.device, torch.float32)
        onehot = self._label_weights(labels, len(images))
        if self.base is not None:
            return self.whiten(self.base.encode(images, onehot)[0], onehot)
        return self.integrate(images, None, onehot, 1.0, 0.0, self.sampling).flatten(1)

    # -- the pieces -------------------------------------------------------------------------------

    def style_distribution(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(means (classes, d), Cholesky factors (classes, d, d)) of each class's posterior means
        in the training digits; the prior's N(0, I) for a class not yet seen."""
        count = self.moment_count.clamp(min=1.0)[:, None]
        mean = self.moment_sum / count
        cov = self.moment_outer / count[:, :, None] - mean[:, :, None] * mean[:, None, :]
        eye = torch.eye(mean.shape[1], dtype=cov.dtype, device=cov.device)
        unseen = self.moment_count < 2
        mean[unseen], cov[unseen] = 0.0, eye
        return mean.float(), torch.linalg.cholesky(cov + 1e-5 * eye).float()

    def _class_gaussians(self, onehot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each item's style Gaussian (N, d), (N, d, d); soft labels blend the classes'."""
        means, chols = self.style_distribution()
        return onehot @ means, torch.einsum("nc,cij->nij", onehot, chols)

    def whiten(self, latents: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        """CVAE latents (N, d) -> styles: their coordinates in their class's Gaussian, the
        inverse of :meth:`latent`; in float32 even under autocast (a triangular solve has no
        bfloat16 kernel)."""
        with torch.autocast(latents.device.type, enabled=False):
            latents, onehot = latents.float(), onehot.float()
            mean, chol = self._class_gaussians(onehot)
            centred = (latents - mean)[:, :, None]
            return torch.linalg.solve_triangular(chol, centred, upper=False)[..., 0]

    def latent(self, styles: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        """Styles (N, d) ~ N(0, T² I) -> CVAE latents mean_d + L_d · style."""
        mean, chol = self._class_gaussians(onehot)
        return mean + torch.einsum("nij,nj->ni", chol, styles)

    def _label_weights(self, labels: torch.Tensor | None, n: int) -> torch.Tensor:
        return label_weights(labels, n, self.config.num_classes, self.device)

    def _start(
        self, x: torch.Tensor, onehot: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(x0, the CVAE decode or None) for training pairs with the digits ``x`` and their
        labels ``onehot`` (all of them: the CVAE always sees the digit)."""
        noise = torch.randn(x.shape, generator=generator, device=x.device)
        if self.base is None:
            return noise, None
        with torch.no_grad():
            mu = self.base.encode(x, onehot)[0]
            if self.training:  # the style distributions: moments of each class's posterior means
                mu64, classes = mu.double(), onehot.argmax(dim=1)
                self.moment_count.index_add_(0, classes, torch.ones_like(mu64[:, 0]))
                self.moment_sum.index_add_(0, classes, mu64)
                self.moment_outer.index_add_(0, classes, mu64[:, :, None] * mu64[:, None, :])
            decoded = self.base.decode(mu, onehot)
        return decoded + self.config.sigma * noise, decoded

    @staticmethod
    def _input(x: torch.Tensor, extra: torch.Tensor | None) -> torch.Tensor:
        return x if extra is None else torch.cat([x, extra], dim=1)

    def guided_velocity(
        self, x: torch.Tensor, extra: torch.Tensor | None, t: float, onehot: torch.Tensor,
        guidance: float,
    ) -> torch.Tensor:  # fmt: skip
        """The velocity at ``x`` ``(N, 1, 28, 28)`` and time ``t``, for labels ``onehot``, with
        classifier-free ``guidance`` (1: the conditional field alone)."""
        inp = self._input(x, extra)
        tt = torch.full((len(x),), t, device=x.device)
        if guidance == 1.0:
            return self.velocity(inp, tt, onehot)
        both = self.velocity(torch.cat([inp, inp]), torch.cat([tt, tt]),
                             torch.cat([onehot, torch.zeros_like(onehot)]))  # fmt: skip
        cond, uncond = both.chunk(2)
        return uncond + guidance * (cond - uncond)

    def integrate(
        self, x: torch.Tensor, extra: torch.Tensor | None, onehot: torch.Tensor,
        t0: float, t1: float, sampling: Sampling,
    ) -> torch.Tensor:  # fmt: skip
        """The ODE from ``x`` at t0 to t1 (:func:`numgen.models.sampling.integrate`), with
        ``sampling``'s steps, solver and guidance; ``extra``: the CVAE decode, or None."""

        def velocity(x: torch.Tensor, t: float) -> torch.Tensor:
            return self.guided_velocity(x, extra, t, onehot, sampling.guidance)

        return integrate(velocity, x, t0, t1, sampling.steps, sampling.solver)
