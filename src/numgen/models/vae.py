"""Variational autoencoders for 28×28 digits: the networks and the loss, nothing else.

A VAE (Kingma & Welling 2014, https://arxiv.org/abs/1312.6114) encodes an image ``x`` into a
Gaussian ``q(z|x) = N(mu, diag(exp(logvar)))`` over a small latent ``z`` and decodes ``z`` back
into pixel probabilities/intensities. Training maximises the evidence lower bound

    ELBO = E_q[log p(x|z)] - KL(q(z|x) || N(0, I)).

The conditional VAE (Sohn et al. 2015) feeds the digit label to both encoder and decoder, so the
latent only has to hold *style* (slant, thickness, width) and the label chooses the digit.

Images are float tensors ``(B, 1, 28, 28)`` with values in [0, 1]; latents are ``(B, latent_dim)``.
Devices, optimisers, paths and printing stay outside this module.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from numgen.config import ConfigError, Limit, check_fields, from_dict
from numgen.models.base import Generator, label_weights
from numgen.models.sampling import Sampling

KINDS = ("vae", "cvae")
ARCHITECTURES = ("conv", "mlp")
LIKELIHOODS = ("mse", "bernoulli")
DEFAULT_HIDDEN = {"conv": 16, "mlp": 400}


@dataclass
class VAEConfig:
    """Everything needed to rebuild a model; stored as ``config.json`` beside the weights."""

    kind: str = "vae"  # "vae" or "cvae" (conditioned on the digit label)
    arch: str = "conv"  # "conv": the classic Keras example; "mlp": 784-hidden-latent
    latent_dim: int = 2
    likelihood: str = "mse"  # "mse" as the original project, or "bernoulli" (binary cross-entropy)
    beta: float = 1.0  # weight of the KL term
    hidden: int | None = None  # dense width: None = 16 for conv (as Keras), 400 for mlp
    depth: int = 1  # hidden layers of the mlp encoder and decoder (conv ignores it)
    num_classes: int = 10  # used by the conditional model only

    LIMITS: ClassVar[dict[str, Limit]] = {
        "latent_dim": Limit(1, 512),
        "beta": Limit(0.0, 1e6),
        # 16,384 wide is already 1 GB of weights per mlp layer; MNIST models are far narrower
        "hidden": Limit(1, 16_384, "wider than any digit model needs: 1 GB of weights a layer"),
        "depth": Limit(1, 8, "hidden layers of the mlp"),
        "num_classes": Limit(1, 1000, "digits need 10"),
    }

    def __post_init__(self) -> None:
        check_fields(self, self.LIMITS)
        if self.kind not in KINDS:
            raise ConfigError(f"kind={self.kind!r}: choose one of {KINDS}")
        if self.arch not in ARCHITECTURES:
            raise ConfigError(f"arch={self.arch!r}: choose one of {ARCHITECTURES}")
        if self.likelihood not in LIKELIHOODS:
            raise ConfigError(f"likelihood={self.likelihood!r}: choose one of {LIKELIHOODS}")
        if self.hidden is None:
            self.hidden = DEFAULT_HIDDEN[self.arch]

    @classmethod
    def from_dict(cls, values: dict) -> VAEConfig:
        return from_dict(cls, values)

    def to_dict(self) -> dict:
        return asdict(self)


# --- networks ------------------------------------------------------------------------------------


class ConvEncoder(nn.Module):
    """(B, 1+c, 28, 28) -> Conv 32 s2 -> (B, 32, 14, 14) -> Conv 64 s2 -> (B, 64, 7, 7) -> dense."""

    def __init__(self, hidden: int, extra_inputs: int = 0, in_channels: int = 1) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(),
        )  # fmt: skip
        self.dense = nn.Sequential(nn.Linear(64 * 7 * 7 + extra_inputs, hidden), nn.ReLU())
        self.out_features = hidden

    def forward(self, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv(x)
        if extra is not None:
            h = torch.cat([h, extra], dim=1)
        return self.dense(h)


class ConvDecoder(nn.Module):
    """(B, in) -> dense 64·7·7 -> ConvT 64 s2 -> (B, 64, 14, 14) -> ConvT 32 s2 -> (B, 32, 28, 28)
    -> ConvT 1 -> logits (B, 1, 28, 28). Transposed convs match Keras' 'same' padding.

    The ReLUs after the transposed convs work in place: at (B, 32, 28, 28) the activations are
    the largest tensors of the model, and not copying them makes CPU decoding measurably faster
    (see bench/train_speed.py). Safe for autograd: a transposed conv's backward needs its input,
    not its output."""

    def __init__(self, in_features: int) -> None:
        super().__init__()
        self.dense = nn.Sequential(nn.Linear(in_features, 64 * 7 * 7), nn.ReLU())
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(64, 64, 3, stride=2, padding=1, output_padding=1), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(64, 32, 3, stride=2, padding=1, output_padding=1), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(32, 1, 3, padding=1),
        )  # fmt: skip

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.deconv(self.dense(h).view(-1, 64, 7, 7))


def _dense_stack(in_features: int, hidden: int, depth: int) -> list[nn.Module]:
    """``depth`` layers Linear -> ReLU, the first from ``in_features``, all ``hidden`` wide."""
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(in_features if i == 0 else hidden, hidden), nn.ReLU()]
    return layers


class MLPEncoder(nn.Module):
    """(B, 1+c, 28, 28) flattened (+ extra inputs) -> ``depth`` dense layers -> (B, hidden)."""

    def __init__(self, hidden: int, extra_inputs: int = 0, depth: int = 1) -> None:
        super().__init__()
        self.net = nn.Sequential(*_dense_stack(28 * 28 + extra_inputs, hidden, depth))
        self.out_features = hidden

    def forward(self, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        h = x.flatten(1)
        if extra is not None:
            h = torch.cat([h, extra], dim=1)
        return self.net(h)


class MLPDecoder(nn.Module):
    """(B, in) -> ``depth`` dense layers -> Linear to 784 logits -> (B, 1, 28, 28)."""

    def __init__(self, in_features: int, hidden: int, depth: int = 1) -> None:
        super().__init__()
        self.net = nn.Sequential(
            *_dense_stack(in_features, hidden, depth), nn.Linear(hidden, 28 * 28)
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h).view(-1, 1, 28, 28)


# --- the models ----------------------------------------------------------------------------------


class VAE(Generator):
    """Unconditional VAE. ``labels`` arguments are accepted and ignored so callers can treat both
    kinds alike. Its style is the latent ``z``; drawing is decoding (deterministic, so ``seeds``
    are not needed)."""

    config_class = VAEConfig
    conditional = False
    can_encode_style = True
    has_latent = True

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        extra = config.num_classes if self.conditional else 0
        if config.arch == "conv":
            self.encoder = ConvEncoder(config.hidden, extra_inputs=extra)
            self.decoder = ConvDecoder(config.latent_dim + extra)
        else:
            self.encoder = MLPEncoder(config.hidden, extra_inputs=extra, depth=config.depth)
            self.decoder = MLPDecoder(config.latent_dim + extra, config.hidden, config.depth)
        self.to_mu = nn.Linear(self.encoder.out_features, config.latent_dim)
        self.to_logvar = nn.Linear(self.encoder.out_features, config.latent_dim)

    @property
    def style_dim(self) -> int:
        return self.config.latent_dim

    @property
    def has_latent_plane(self) -> bool:
        return self.config.latent_dim == 2

    def _condition(self, labels: torch.Tensor | None, batch: int) -> torch.Tensor | None:
        return None

    def encode(
        self, x: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (B, 1, 28, 28) in [0, 1] -> (mu, logvar), each (B, latent_dim)."""
        h = self.encoder(x, self._condition(labels, len(x)))
        return self.to_mu(h), self.to_logvar(h)

    def decode_logits(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Latents (B, latent_dim) -> pre-sigmoid logits (B, 1, 28, 28)."""
        cond = self._condition(labels, len(z))
        return self.decoder(z if cond is None else torch.cat([z, cond], dim=1))

    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Latents (B, latent_dim) -> images (B, 1, 28, 28) in [0, 1]."""
        return torch.sigmoid(self.decode_logits(z, labels))

    def forward(
        self,
        x: torch.Tensor,
        labels: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode, draw z with the reparameterisation trick, decode: (logits, mu, logvar)."""
        mu, logvar = self.encode(x, labels)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + eps * torch.exp(0.5 * logvar)
        return self.decode_logits(z, labels), mu, logvar

    def loss(
        self, x: torch.Tensor, labels: torch.Tensor | None = None,
        generator: torch.Generator | None = None, kl_weight: float | None = None,
    ) -> dict[str, torch.Tensor]:  # fmt: skip
        """:func:`vae_loss` of one reparameterised pass over ``x``; ``kl_weight`` replaces beta."""
        logits, mu, logvar = self(x, labels, generator=generator)
        beta = self.config.beta if kl_weight is None else kl_weight
        return vae_loss(x, logits, mu, logvar, self.config.likelihood, beta)

    @property
    def sampling(self) -> Sampling:
        # Styles are drawn from N(0, T² I) with T = 0.6 rather than from the prior N(0, I): the
        # prior's outer shell decodes to blurred or ambiguous digits more often than its centre.
        # For the bundled cvae, T = 0.6 keeps slant, width and thickness varied while the
        # recognizer reads 99.9 % of digits and ~99 % of 4-digit numbers back
        # (bench/results/compose_readback.md).
        return Sampling(temperature=0.6)

    def draw(
        self, labels: torch.Tensor | None, styles: torch.Tensor, seeds: torch.Tensor | None = None,
        sampling: Sampling | None = None,
    ) -> torch.Tensor:  # fmt: skip
        return self.decode(styles, labels)

    def encode_style(self, images: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """The posterior mean of each picture."""
        return self.encode(images, labels)[0]

    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator | None = None, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``n`` images (n, 1, 28, 28) decoded from the prior N(0, I)."""
        z = torch.randn(n, self.config.latent_dim, generator=generator, device=self.device)
        return self.decode(z, labels)


class CVAE(VAE):
    """Conditional VAE: a one-hot digit label is concatenated to the encoder's features and to z.
    Labels are digits ``(B,)``, or ``(B, num_classes)`` float weights that blend digits."""

    conditional = True

    def _condition(self, labels: torch.Tensor | None, batch: int) -> torch.Tensor:
        return label_weights(labels, batch, self.config.num_classes, self.device)

    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator | None = None, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        if labels is None:  # no digits asked for: cycle through 0..9
            labels = torch.arange(n, device=self.device) % self.config.num_classes
        return super().sample(n, generator, labels)


# --- the loss ------------------------------------------------------------------------------------


def vae_loss(
    x: torch.Tensor, logits: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
    likelihood: str = "mse", beta: float = 1.0,
) -> dict[str, torch.Tensor]:  # fmt: skip
    """Per-image loss parts, averaged over the batch.

    - ``recon``: summed over the 784 pixels. For ``mse`` the squared error of sigmoid(logits)
      (the original project, as Keras' ``mse * 28 * 28``); for ``bernoulli`` the binary
      cross-entropy, i.e. -log p(x|z) in nats.
    - ``kl``: KL(N(mu, sigma²) || N(0, I)) in closed form (Kingma & Welling 2014, appendix B).
    - ``loss`` = recon + beta · kl, the quantity minimised.
    """
    if likelihood == "mse":
        recon = F.mse_loss(torch.sigmoid(logits), x, reduction="none")
    else:
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    recon = recon.flatten(1).sum(1).mean()
    kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)).mean()
    return {"loss": recon + beta * kl, "recon": recon, "kl": kl}
