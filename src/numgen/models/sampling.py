"""How to draw from a model, as a value: :class:`Sampling` (style temperature, legibility check,
ODE steps, solver and guidance), saved with the weights (the fields of the family's
``config.json``) and passed with each call, as diffusers keeps a scheduler's config apart from
the network. A loaded model is never edited to change them: ``model.sampling`` gives its saved
defaults and ``model.sampling_with(...)`` a changed copy.

Also the ODE solvers the flow families integrate with (:func:`integrate`), and the checks of
every sampling setting, so that configs, the CLI and exports name a bad value the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise

import torch

from numgen.errors import ConfigError

SOLVERS = ("euler", "heun", "ab2")
# the precision of a draw's network passes: float32, the same bytes on every machine; or
# bfloat16, faster where the CPU or GPU multiplies it natively (AVX-512 BF16, AMX, Ampere on),
# its digits a little different and machine-dependent (bench/results/draw_precision.md)
PRECISIONS = ("fp32", "bf16")

# (x, t) -> dx/dt at time t: ``(B, ...)`` like x
Velocity = Callable[[torch.Tensor, float], torch.Tensor]


@dataclass(frozen=True)
class Sampling:
    """How a model draws: styles from N(0, T² I) (``temperature`` T); ``check``, the legibility
    threshold of :mod:`numgen.legibility` (None: no check); and for the families that integrate
    an ODE (flows), its ``steps``, ``solver`` and classifier-free ``guidance`` weight (1 = plain
    conditional, no extra cost). Families that draw in one pass ignore those three.
    ``precision``: of the network passes, the legibility check's among them (see PRECISIONS)."""

    temperature: float = 1.0
    check: float | None = None
    steps: int = 4
    solver: str = "euler"
    guidance: float = 1.0
    precision: str = "fp32"

    def __post_init__(self) -> None:
        check_style_settings(self.temperature, self.check)
        check_sampling(self.steps, self.guidance, self.solver)
        check_precision(self.precision)


def check_precision(precision: str | None) -> None:
    """A ConfigError naming a precision that is not one of PRECISIONS (None passes)."""
    if precision is not None and precision not in PRECISIONS:
        raise ConfigError(f"precision={precision!r}: choose one of {', '.join(PRECISIONS)}")


# digits in one network pass when drawing or reading them. On a CPU a pass of a few hundred keeps
# the convs' activations in the caches, so the element-wise passes between the convs (FiLM, SiLU,
# skips), which cost as much as the convs, run from cache rather than memory: in passes of 256
# the conv networks drew and read 1.9-3.7× faster than in passes of 2,048, and the CVAE's MLP as
# fast (bench/results/pass_rows.md); less when other jobs fill the shared cache. A GPU wants wide
# passes.
CPU_PASS_ROWS = 256
DEVICE_PASS_ROWS = 2048


def passes(n: int, device: torch.device) -> list[slice]:
    """``n`` digits' rows split into the fewest passes of at most ``CPU_PASS_ROWS`` on a CPU
    (``DEVICE_PASS_ROWS`` elsewhere), of near-equal sizes: no pass of a few stray rows, whose
    matrix products take other kernels (a pass of 1-3 rows differs from a wide one in the last
    bits)."""
    most = CPU_PASS_ROWS if device.type == "cpu" else DEVICE_PASS_ROWS
    count = max(1, math.ceil(n / most))
    ends = [n * k // count for k in range(count + 1)]
    return [slice(start, end) for start, end in pairwise(ends)]


def precision_context(precision: str, device: torch.device) -> torch.autocast:
    """The autocast context of network passes at ``precision`` on ``device``: bfloat16 for
    "bf16", none for "fp32"."""
    return torch.autocast(device.type, torch.bfloat16, enabled=precision == "bf16")


def check_style_settings(temperature: float, check: float | None) -> None:
    """A ConfigError naming a bad style temperature (0-10) or legibility threshold (in (0, 1),
    or None for no check)."""
    if not (math.isfinite(temperature) and 0 <= temperature <= 10):
        raise ConfigError(f"temperature={temperature}: must be a number between 0 and 10")
    if check is not None and not (isinstance(check, float) and 0 < check < 1):
        raise ConfigError(f"check={check}: the legibility threshold lies between 0 and 1")


def check_sampling(steps: int | None, guidance: float | None, solver: str | None = "euler") -> None:
    """A ConfigError naming the bad sampling option: steps 1-1000, finite guidance 0-20, a known
    solver; ``None`` (keep the model's default) passes."""
    bad_steps = isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= 1000
    if steps is not None and bad_steps:
        raise ConfigError(f"steps={steps}: choose a whole number of ODE steps from 1 to 1000")
    finite = isinstance(guidance, int | float) and math.isfinite(guidance)
    if guidance is not None and not (finite and 0 <= guidance <= 20):
        raise ConfigError(f"guidance={guidance}: choose a finite guidance weight from 0 to 20")
    if solver is not None and solver not in SOLVERS:
        raise ConfigError(f"solver={solver!r}: choose one of {SOLVERS}")


def integrate(
    velocity: Velocity, x: torch.Tensor, t0: float, t1: float, steps: int, solver: str
) -> torch.Tensor:
    """Steps of dx/dt = velocity(x, t) from t0 to t1 (backwards when t1 < t0), evenly spaced.

    - ``euler``: x += h v(x, a); first order, one evaluation a step.
    - ``heun``: Euler's guess, then the average of the velocities at both ends; second order,
      two evaluations a step. Its correction is skipped on a step that ends at t = 1, as EDM
      does at its last step (Karras et al. 2022, https://arxiv.org/abs/2206.00364): at t = 1
      the point is the digit itself, and the velocity must be read from a vanishing trace of
      the start, so the field there is unreliable (evaluating it drew 11-40 % legible digits
      from the bundled flow).
    - ``ab2``: two-step Adams-Bashforth, second order at Euler's cost: each step extrapolates
      the velocity from this step's and the previous step's evaluations,
      x += h (v_k + (v_k - v_{k-1}) / 2), after one Euler step to start; the multistep idea
      of DPM-Solver++(2M) (Lu et al. 2022, https://arxiv.org/abs/2211.01095). It never
      evaluates at t1.
    """
    times = torch.linspace(t0, t1, steps + 1).tolist()
    previous = None
    for a, b in zip(times[:-1], times[1:], strict=True):
        v = velocity(x, a)
        step = v
        if solver == "heun" and b < 1.0:
            guess = x + (b - a) * v
            step = 0.5 * (v + velocity(guess, b))
        elif solver == "ab2" and previous is not None:
            step = v + 0.5 * (v - previous)  # evenly spaced steps: (3 v_k - v_{k-1}) / 2
        x = x + (b - a) * step
        previous = v
    return x
