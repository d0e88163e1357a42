"""One-step generation: the flow's digits in one network evaluation, with a learnt style prior.

The bundled flow (``flow.py``) refines a CVAE's decode into a crisp digit by integrating an ODE
in 3 steps of its U-Net. This family keeps that flow, frozen, as a *teacher* and trains a
*student* of the same shape to land where the teacher's ODE ends, in one step:

    x0 = decode(z, label) + sigma · noise          (the teacher's start)
    x1 = x0 + student(x0, decode, label)            (one evaluation, instead of 3)

trained on the ODE map itself (knowledge distillation, Luhman & Luhman 2021,
https://arxiv.org/abs/2101.02388): ``|| x1 - teacher_ode(x0) ||²``, from the teacher's weights.
With ``adversarial`` > 0 a small class-conditional critic (projection discriminator, Miyato &
Koyama 2018, https://arxiv.org/abs/1802.05637) is trained against real MNIST digits at the same
time, and the student is pushed towards what the critic takes for real (adversarial diffusion
distillation, Sauer et al. 2023, https://arxiv.org/abs/2311.17042): distillation keeps the
student on the teacher's map, the critic pulls its digits towards real ones, where the teacher
falls short.

With ``legible`` > 0 the student also draws from *sampled* styles, as it will when used, and a
frozen digit reader (numgen's bundled checker, given by training) scores them: its cross-entropy
of the asked digit, counted only where the reader is less than 90 % sure, pulls the student's
draws of ambiguous styles towards the digit asked — a classifier's guidance distilled into the
one step (as Dhariwal & Nichol 2021 guide a sampler, but paid once, in training). The judges
numgen's benches score with are other networks.

The *style* is where the teacher's legibility is lost: it draws each digit's latent from one
Gaussian per class, whose mass spreads between the classes (a 4 that closes like a 9). Here a
style ``s ~ N(0, T² I)`` may first pass a learnt style prior, and then be pulled a share of the
way (``anchor_pull``) towards the nearest style of a real training digit of its class, kept as
training passes them (``anchors`` per class) — or, with ``balance_anchors``, towards the kept
style whose cell of a balanced power diagram it falls in, so that every kept style is drawn
equally often: see ``styles.py``. With ``anchor_floor``, the kept styles whose drawings the
reader (the bundled checker) misreads are dropped at the end of training's epochs
(:meth:`OneStepModel.drop_misread_anchors`). One style vector still gives
all digits of a number one hand: the same point of the base distribution, carried into each
class.

The loss is one sum whose parts touch disjoint parameters (student: distillation and
adversarial; critic: its hinge loss on real digits and detached student digits; prior: its
negative log-likelihood), so the training loop's single optimiser trains them all. The critic's
weights are saved with the model (they are needed to resume; ~30k numbers) but never drawn with.

Images are ``(B, 1, 28, 28)`` in [0, 1]; labels ``(B,)`` digits or ``(B, 10)`` weights.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from numgen.config import check_fields, from_dict
from numgen.errors import ConfigError
from numgen.models.base import Generator, label_weights
from numgen.models.critic import Critic
from numgen.models.flow import FlowConfig, FlowModel, VelocityUNet
from numgen.models.pixels import despeckle, digit_noise
from numgen.models.sampling import Sampling, check_style_settings, passes
from numgen.models.styles import StyleAnchors, StylePrior, check_anchor_settings


@dataclass
class OneStepConfig:
    """Everything needed to rebuild a one-step model; stored as ``config.json``."""

    kind: str = "onestep"
    teacher: dict | None = None  # the FlowConfig of the flow distilled (start "cvae")
    channels: int = 16  # the student's U-Net width at 28×28
    prior_layers: int = 6  # coupling layers of the learnt style prior
    prior_hidden: int = 64  # width of each coupling's network
    adversarial: float = 0.0  # weight of the critic's term for the student; 0: distillation only
    legible: float = 0.0  # weight of a reader's (hinged) cross-entropy on digits of sampled styles
    critic_channels: int = 16  # the critic's width at 14×14 (2× at 7×7, 4× at 4×4)
    anchors: int = 0  # whitened styles of training digits kept per class (styles.StyleAnchors)
    anchor_pull: float = 0.0  # share of the way a sampled style moves to its nearest kept style
    balance_anchors: bool = False  # each kept style chosen equally often (styles.StyleAnchors)
    anchor_floor: float = 0.0  # kept styles whose drawings the checker reads worse are dropped
    loose_pull: float = 0.0  # the pull of kept styles whose drawings read surely at it; 0: none
    temperature: float = 1.0  # styles ~ N(0, T² I)
    check: float | None = None  # numgen.legibility's threshold; None: no check
    num_classes: int = 10

    def __post_init__(self) -> None:
        check_fields(self)
        if self.kind != "onestep":
            raise ConfigError(f"kind={self.kind!r}: a one-step config has kind 'onestep'")
        if not isinstance(self.teacher, dict):
            raise ConfigError(
                "teacher: the config of the flow to distil (a flow with start 'cvae')"
            )
        if FlowConfig.from_dict(self.teacher).start != "cvae":
            raise ConfigError("teacher: only a flow that refines a CVAE (start 'cvae') distils")
        for name, low, high in (("channels", 1, 256), ("prior_layers", 0, 64),
                                ("prior_hidden", 1, 4096), ("critic_channels", 1, 256),
                                ("anchors", 0, 10_000)):  # fmt: skip
            if not low <= getattr(self, name) <= high:
                raise ConfigError(f"{name}={getattr(self, name)}: must be from {low} to {high}")
        for name in ("adversarial", "legible"):
            if not (math.isfinite(getattr(self, name)) and 0 <= getattr(self, name) <= 10):
                raise ConfigError(
                    f"{name}={getattr(self, name)}: must be a number between 0 and 10"
                )
        check_anchor_settings(
            self.anchors, self.anchor_pull, self.balance_anchors, self.anchor_floor, self.loose_pull
        )
        check_style_settings(self.temperature, self.check)

    @classmethod
    def from_dict(cls, values: dict) -> OneStepConfig:
        return from_dict(cls, values)

    def to_dict(self) -> dict:
        return asdict(self)


LEGIBLE_ENOUGH = 0.9  # the legible term leaves alone digits the reader reads this surely
ANCHOR_READS = 40_000  # sampled styles of each class drawn and read to judge its kept styles
SURE_READ = 0.99  # a kept style whose drawings read this surely on average takes the loose pull


def shapes(module: nn.Module) -> dict[str, torch.Size]:
    """The shape of each of a module's weights, by name."""
    return {name: value.shape for name, value in module.state_dict().items()}


# --- the family ----------------------------------------------------------------------------------


class OneStepModel(Generator):
    """A one-step generator distilled from a flow (see the module docstring)."""

    config_class = OneStepConfig
    conditional = True
    can_encode_style = True

    def __init__(self, config: OneStepConfig) -> None:
        super().__init__()
        self.config = config
        self.teacher = FlowModel(FlowConfig.from_dict(config.teacher))
        self.teacher.requires_grad_(False)  # frozen: its base, its style Gaussians, its field
        classes = config.num_classes
        self.student = VelocityUNet(2, config.channels, classes)
        dim = self.teacher.style_dim
        self.prior = StylePrior(dim, config.prior_layers, config.prior_hidden, classes)
        self.critic = Critic(config.critic_channels, classes) if config.adversarial > 0 else None
        self.anchors = (
            StyleAnchors(
                dim, config.anchors, classes, config.balance_anchors, config.loose_pull > 0
            )
            if config.anchors
            else None
        )
        # the reader of the ``legible`` term: given by training (use_reader), never saved
        object.__setattr__(self, "reader", None)

    @property
    def style_dim(self) -> int:
        return self.teacher.style_dim

    @property
    def sampling(self) -> Sampling:
        return Sampling(temperature=self.config.temperature, check=self.config.check)

    def adopt(self, base: Generator) -> None:
        """Take over the trained model this one builds on (before training): a flow to distil —
        the teacher's weights, and the student's too where the two have the same shape
        (distillation starts from the teacher) — or a one-step model of the same teacher, to
        train on from (its student; its critic, style prior and anchors where this model has the
        same)."""
        if isinstance(base, OneStepModel):
            if base.config.teacher != self.config.teacher:
                raise ValueError("the one-step model to train on from has another teacher")
            if base.config.channels != self.config.channels:
                raise ValueError(
                    f"the one-step model to train on from is {base.config.channels} channels "
                    f"wide, not {self.config.channels}"
                )
            self.teacher.load_state_dict(base.teacher.state_dict())
            self.student.load_state_dict(base.student.state_dict())
            for part in ("critic", "prior"):  # where this model has the same
                mine, theirs = getattr(self, part), getattr(base, part)
                if mine is not None and theirs is not None and shapes(mine) == shapes(theirs):
                    mine.load_state_dict(theirs.state_dict())
            mine, theirs = self.anchors, base.anchors
            if mine is not None and theirs is not None and mine.styles.shape == theirs.styles.shape:
                # the kept styles, and the offsets where both are balanced (end_epoch refits them)
                mine.load_state_dict(theirs.state_dict(), strict=False)
            return
        if not isinstance(base, FlowModel) or base.config.to_dict() != self.config.teacher:
            raise ValueError("the flow to distil differs from the config's teacher")
        self.teacher.load_state_dict(base.state_dict())
        if base.config.channels == self.config.channels:
            self.student.load_state_dict(base.velocity.state_dict())

    def end_epoch(self) -> None:
        """With balanced anchors, fit their offsets to the styles kept so far, at the model's
        temperature (:meth:`StyleAnchors.balance`), unless none was kept since the last fit;
        with ``anchor_floor``, then drop the kept styles whose drawings the reader misreads
        (:meth:`drop_misread_anchors`) and fit the offsets to those left; with ``loose_pull``,
        then loosen the pull of those whose drawings read surely (:meth:`loosen_sure_anchors`)."""
        if self.anchors is None or not self.anchors.unfitted:
            return
        judged = self.config.anchor_floor > 0 or self.config.loose_pull > 0
        if judged:
            self._reader("anchor_floor or loose_pull > 0")  # before the ~100 s fit, not after
            for c in range(self.config.num_classes):  # judged at the one pull, anchor_pull
                self.anchors.set_pulls(c, None)
        if self.config.balance_anchors:
            self.anchors.balance(self.config.temperature)
        if self.config.anchor_floor > 0:
            self.drop_misread_anchors()
            if self.config.balance_anchors:
                self.anchors.balance(self.config.temperature)
        if self.config.loose_pull > 0:
            self.loosen_sure_anchors()
        if judged:  # fitted, whether or not balance() ran last
            self.anchors.unfitted = False

    def drop_misread_anchors(self, reads: int | None = None) -> None:
        """Drop each kept style whose drawings the reader reads as the asked digit with a mean
        probability under ``anchor_floor`` (:meth:`read_anchors`, ``reads`` per class).

        Why: a few real training digits are themselves ambiguous (a 4 that closes like a 9), and
        every style pulled towards one of them is drawn ambiguous too."""
        means = self.read_anchors(self.config.anchor_pull, "anchor_floor > 0", reads)
        for c, mean in enumerate(means):
            if len(mean):
                self.anchors.drop(c, mean >= self.config.anchor_floor)

    def loosen_sure_anchors(self, reads: int | None = None) -> None:
        """Give each kept style whose drawings, drawn at ``loose_pull``, the reader reads as the
        asked digit with a mean probability of at least SURE_READ that looser pull; the others
        keep ``anchor_pull`` (:meth:`read_anchors`, ``reads`` per class).

        Why: a looser pull draws more varied digits (recall) but more misread ones. Most kept
        styles lie deep inside their class, where it costs nothing, and the few near another
        class keep the tight pull (``bench/results/onestep_adaptive_pull.md``)."""
        loose, tight = self.config.loose_pull, self.config.anchor_pull
        for c, mean in enumerate(self.read_anchors(loose, "loose_pull > 0", reads)):
            sure = mean >= SURE_READ
            self.anchors.set_pulls(c, torch.where(sure, loose, tight).float())

    @torch.no_grad()
    def read_anchors(self, pull: float, why: str, reads: int | None = None) -> list[torch.Tensor]:
        """For each class, the reader's mean probability of the asked digit over the drawings
        that went to each of its kept styles ``(count[c],)`` (1 where none did): ``reads`` styles
        of each class (default ANCHOR_READS) drawn as :meth:`draw` draws them, seeded, but with
        every kept style pulling ``pull`` of the way."""
        reader = self._reader(why)
        reads = ANCHOR_READS if reads is None else reads
        generator = torch.Generator().manual_seed(0)
        means = []
        for c in range(self.config.num_classes):
            kept = int(self.anchors.count[c])
            total = torch.zeros(kept, dtype=torch.float64, device=self.device)
            drawn = torch.zeros(kept, dtype=torch.float64, device=self.device)
            for rows in passes(reads, self.device) if kept else []:
                n = rows.stop - rows.start
                styles = torch.randn(n, self.style_dim, generator=generator).to(self.device)
                noise = torch.randn(n, 1, 28, 28, generator=generator).to(self.device)
                onehot = self._onehot(torch.full((n,), c, device=self.device), n)
                styles = styles * self.config.temperature
                digits, chosen = self._draw(styles, onehot, noise, pull)
                asked = F.softmax(reader(digits).float(), dim=1)[:, c].double()
                total.index_add_(0, chosen, asked)
                drawn.index_add_(0, chosen, torch.ones_like(asked))
            means.append(torch.where(drawn > 0, total / drawn.clamp_min(1), 1.0))
        return means

    @property
    def wants_reader(self) -> bool:
        """Whether training must give this model a digit reader (:meth:`use_reader`): for the
        ``legible`` term, or to judge kept styles (``anchor_floor``, ``loose_pull``)."""
        config = self.config
        return config.legible > 0 or config.anchor_floor > 0 or config.loose_pull > 0

    def use_reader(self, reader: nn.Module) -> None:
        """The frozen digit classifier (images in [0, 1] -> logits) that the ``legible`` term
        reads the student's digits with. It judges training, as the data does: it is kept out of
        the model's modules, so it is never saved, moved, trained or put in training mode."""
        object.__setattr__(self, "reader", reader.requires_grad_(False).eval())

    def _reader(self, why: str) -> nn.Module:
        """The reader given by training, or a ValueError saying ``why`` one is needed."""
        if self.reader is None:
            raise ValueError(f"{why}: give the reader with use_reader() before training")
        return self.reader

    def _onehot(self, labels: torch.Tensor | None, n: int) -> torch.Tensor:
        return label_weights(labels, n, self.config.num_classes, self.device)

    def _start(self, latents: torch.Tensor, onehot: torch.Tensor, noise: torch.Tensor) -> tuple:
        """(x0, the CVAE decode) for CVAE latents ``(N, d)``: the teacher's starting points."""
        decoded = self.teacher.base.decode(latents, onehot)
        return decoded + self.teacher.config.sigma * noise, decoded

    def _start_of_styles(
        self, styles: torch.Tensor, onehot: torch.Tensor, noise: torch.Tensor,
        pull: float | None = None,
    ):  # fmt: skip
        """(x0, the CVAE decode, the kept style each was pulled towards or None) for styles
        ``(N, d)``: through the prior (and the pull towards the kept styles: ``anchor_pull``, or
        ``pull``, where a kept style has no pull of its own) to each class's CVAE latent, then
        the teacher's start."""
        whitened = self.prior(styles, onehot)
        chosen = None
        pull = self.config.anchor_pull if pull is None else pull
        if self.anchors is not None and pull > 0:
            # label weights that mix digits: the strongest one's styles
            classes = onehot.argmax(dim=1)
            whitened, chosen = self.anchors.pull(whitened, classes, pull)
        return *self._start(self.teacher.latent(whitened, onehot), onehot, noise), chosen

    def _draw(
        self, styles: torch.Tensor, onehot: torch.Tensor, noise: torch.Tensor,
        pull: float | None = None,
    ) -> tuple:  # fmt: skip
        """(digits in [0, 1], the kept style each was pulled towards or None): what :meth:`draw`
        gives for these styles and start noise (with ``pull`` as in :meth:`_start_of_styles`)."""
        x0, decoded, chosen = self._start_of_styles(styles, onehot, noise, pull)
        return despeckle(self._one_step(x0, decoded, onehot)), chosen

    def _one_step(self, x0: torch.Tensor, decoded: torch.Tensor, onehot: torch.Tensor):
        t = torch.zeros(len(x0), device=x0.device)
        return x0 + self.student(torch.cat([x0, decoded], dim=1), t, onehot)

    def loss(
        self, x: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None,
        kl_weight: float | None = None,
    ) -> dict[str, torch.Tensor]:  # fmt: skip
        """Distillation (+ adversarial) and the style prior's likelihood on a batch of real
        digits: each digit's posterior mean gives a starting point for the teacher's ODE and a
        style for the prior to learn. ``kl_weight`` does not apply (no KL term)."""
        n = len(x)
        onehot = self._onehot(labels, n)
        teacher = self.teacher
        noise = torch.randn(x.shape, generator=generator, device=x.device)
        with torch.no_grad():
            latents = teacher.base.encode(x, onehot)[0]
            x0, decoded = self._start(latents, onehot, noise)
            target = teacher.integrate(x0, decoded, onehot, 0.0, 1.0, teacher.sampling)
            whitened = teacher.whiten(latents, onehot)
            if self.anchors is not None and self.training:
                self.anchors.keep(whitened, onehot.argmax(dim=1))
        drawn = self._one_step(x0, decoded, onehot)
        distill = F.mse_loss(drawn, target, reduction="none").flatten(1).sum(1).mean()
        prior = self.prior.nll(whitened, onehot).mean()
        parts = {"distill": distill, "prior": prior}
        total = distill + prior
        if self.critic is not None:
            critic = (
                F.relu(1 - self.critic(x, onehot)).mean()
                + F.relu(1 + self.critic(drawn.detach(), onehot)).mean()
            )
            # the student's term reads the critic through detached weights: its gradient reaches
            # the student only, never helps the critic
            frozen = {name: p.detach() for name, p in self.critic.named_parameters()}
            adversarial = -functional_call(self.critic, frozen, (drawn, onehot)).mean()
            total = total + critic + self.config.adversarial * adversarial
            parts |= {"critic": critic, "adversarial": adversarial}
        if self.config.legible > 0:
            legible = self._legibility(onehot, x.shape, generator)
            total = total + self.config.legible * legible
            parts["legible"] = legible
        return {"loss": total, **parts}

    def _legibility(
        self, onehot: torch.Tensor, shape: torch.Size, generator: torch.Generator | None
    ) -> torch.Tensor:
        """The reader's cross-entropy of the asked digits, hinged at LEGIBLE_ENOUGH, on the
        student's digits of styles drawn as :meth:`draw` draws them (N(0, T² I) through the
        prior): distillation only ever sees the styles of real digits, but a sampler also draws
        between-class styles (a 4 that closes like a 9), and this term teaches the student to
        draw even those as the digit asked."""
        reader = self._reader("legible > 0")
        styles = torch.randn((shape[0], self.style_dim), generator=generator, device=self.device)
        noise = torch.randn(shape, generator=generator, device=self.device)
        with torch.no_grad():
            x0, decoded, _ = self._start_of_styles(styles * self.config.temperature, onehot, noise)
        drawn = self._one_step(x0, decoded, onehot)
        # the reader sees what draw() gives (clamped, despeckled); the gradient passes straight
        # through, so that pixels pushed past the range are still pulled back
        seen = drawn + (despeckle(drawn.detach()) - drawn).detach()
        asked = (onehot * F.log_softmax(reader(seen).float(), dim=1)).sum(1)
        # only digits read as asked with probability under LEGIBLE_ENOUGH count: the term mends
        # the misread ones and leaves well-read digits as varied as distillation made them
        return F.relu(math.log(LEGIBLE_ENOUGH) - asked).mean()

    @torch.no_grad()
    def draw(
        self, labels: torch.Tensor | None, styles: torch.Tensor, seeds: torch.Tensor | None = None,
        sampling: Sampling | None = None,
    ) -> torch.Tensor:  # fmt: skip
        """Digits ``(N, 1, 28, 28)`` in [0, 1]: the style through the prior to a CVAE latent, its
        decode plus each digit's seeded noise, one student step."""
        n = len(styles)
        onehot = self._onehot(labels, n)
        styles = styles.to(self.device, torch.float32)
        return self._draw(styles, onehot, digit_noise(seeds, n, self.device))[0]

    @torch.no_grad()
    def encode_style(self, images: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """The teacher's style of the picture (its posterior mean, whitened in its class's
        Gaussian), back through the prior. With anchors, :meth:`draw` pulls it as it pulls a
        sampled style, so the copy is looser than the flow's (bench/style_copy.py)."""
        styles = self.teacher.encode_style(images, labels)
        return self.prior.inverse(styles, self._onehot(labels, len(images)))[0]
