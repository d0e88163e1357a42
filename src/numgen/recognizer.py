"""The judge: a small CNN that recognises MNIST digits, trained by numgen itself.

Generated digits are scored with it — its labels for accuracy against intended digits, its
confidence, and its penultimate layer as the feature space for Fréchet distance and
precision/recall (see :mod:`numgen.metrics`).

Images are float tensors ``(B, 1, 28, 28)`` with values in [0, 1]. The network is

    [Conv 3×3 → BN → ReLU] × 2 at c channels  → max-pool   (B, c, 14, 14)
    [Conv 3×3 → BN → ReLU] × 2 at 2c channels → max-pool   (B, 2c, 7, 7)
    Linear 2c·7·7 → 128 → BN → ReLU                         features (B, 128)
    Dropout → Linear 128 → 10                               logits (B, 10)

with c = 16 by default: 32/64 channels cost twice the time on a 2-core CPU for little gain.

``arch="resnet"`` builds another architecture with the same interface, for a second judge whose
mistakes are not the first's (the bundled ``judge2``; never used by the legibility check):

    Conv 3×3 → BN → ReLU at c channels → max-pool                 (B, c, 14, 14)
    residual block c → 2c (two 3×3 convs, 1×1 projection)           (B, 2c, 14, 14)
    residual block 2c → 4c, stride 2                                (B, 4c, 7, 7)
    global average pool → Linear 4c → 128 → BN → ReLU              features (B, 128)
    Dropout → Linear 128 → 10                                       logits (B, 10)

A ``RecognizerConfig`` holds the architecture and the training recipe; it is saved as
``config.json`` beside the weights, so a saved recognizer records how it was made.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from numgen import hub
from numgen.config import check_fields
from numgen.data import Digits, to_tensor
from numgen.metrics import accuracy
from numgen.models.sampling import passes

log = logging.getLogger(__name__)

KIND = "recognizer"  # the "kind" in config.json, which tells it apart from VAE configs
BUNDLED = "recognizer"  # the bundled recognizer's name (numgen/pretrained/recognizer)
SECOND_JUDGE = "judge2"  # the bundled second judge, a residual network (numgen/pretrained/judge2)
ARCHS = ("cnn", "resnet")


@dataclass
class RecognizerConfig:
    """Architecture and training recipe; every field is stored in ``config.json``."""

    kind: str = KIND
    # architecture
    arch: str = "cnn"  # "cnn" (the judge's recipe) or "resnet" (the second judge's)
    channels: int = 16  # channels of the first conv block; the second block has twice as many
    features: int = 128  # width of the penultimate layer, the feature space for metrics
    dropout: float = 0.25  # before the last layer
    # training
    epochs: int = 6
    batch_size: int = 128
    lr: float = 3e-3  # peak learning rate of the one-cycle schedule
    max_shift: float = 2.0  # augmentation: random shift up to this many pixels in x and y,
    max_rotation: float = 10.0  # rotation up to this many degrees,
    max_scale: float = 0.1  # and zoom by a factor within 1 ± max_scale
    seed: int = 0

    def __post_init__(self) -> None:
        check_fields(self)
        if self.kind != KIND:
            raise ValueError(f"kind={self.kind!r}: a recognizer config has kind {KIND!r}")
        if self.arch not in ARCHS:
            raise ValueError(f"arch={self.arch!r}: choose one of {', '.join(ARCHS)}")
        for name in ("channels", "features", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: must be a positive integer")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout={self.dropout}: must lie in [0, 1)")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr={self.lr}: must be a finite number > 0")
        for name in ("max_shift", "max_rotation", "max_scale"):
            if not 0 <= getattr(self, name) < 28:
                raise ValueError(f"{name}={getattr(self, name)}: must be >= 0 and small")

    def to_dict(self) -> dict:
        return asdict(self)


# --- the network ---------------------------------------------------------------------------------


def _conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two 3×3 convs with BatchNorm and ReLU, then a 2×2 max-pool that halves height and width."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels), nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels), nn.ReLU(),
        nn.MaxPool2d(2),
    )  # fmt: skip


class _Residual(nn.Module):
    """Two 3×3 convs with BatchNorm (the first with ``stride``) plus a 1×1 projection of the
    input, then ReLU: (B, in, H, W) -> (B, out, H / stride, W / stride)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU(),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )  # fmt: skip
        self.shortcut = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
            nn.BatchNorm2d(out_channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


def _body(config: RecognizerConfig) -> nn.Sequential:
    """The layers from an image (B, 1, 28, 28) to the features (B, config.features)."""
    c = config.channels
    if config.arch == "resnet":
        layers = [
            nn.Conv2d(1, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
            nn.MaxPool2d(2), _Residual(c, 2 * c), _Residual(2 * c, 4 * c, stride=2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * c, config.features, bias=False),
        ]  # fmt: skip
    else:
        layers = [
            _conv_block(1, c), _conv_block(c, 2 * c), nn.Flatten(),
            nn.Linear(2 * c * 7 * 7, config.features, bias=False),
        ]  # fmt: skip
    return nn.Sequential(*layers, nn.BatchNorm1d(config.features), nn.ReLU())


class Recognizer(nn.Module):
    """Digit classifier: ``forward`` gives logits (B, 10), ``features`` the embedding (B, 128)."""

    def __init__(self, config: RecognizerConfig) -> None:
        super().__init__()
        self.config = config
        self.body = _body(config)
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(config.features, 10))
        # channels-last convs, weights and inputs alike: oneDNN runs them without reordering
        # memory (~1.5× the digits/s of the legibility check on a CPU; loading keeps the layout)
        self.to(memory_format=torch.channels_last)

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | Path = BUNDLED, device: str | torch.device = "cpu"
    ) -> Recognizer:
        """A recognizer in eval mode from a model directory, else a bundled name; by default the
        one bundled with numgen."""
        return hub.load_pretrained(name_or_path, _build, device)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.json`` + ``model.safetensors`` into ``directory`` (atomically)."""
        return hub.save_pretrained(self, directory)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, 1, 28, 28) in [0, 1] -> penultimate-layer features (B, features), >= 0."""
        return self.body(x.contiguous(memory_format=torch.channels_last))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, 1, 28, 28) in [0, 1] -> class logits (B, 10)."""
        return self.head(self.features(x))


def _build(config: dict) -> Recognizer:
    if config.get("kind") != KIND:
        raise hub.ModelError(
            f"kind {config.get('kind')!r}: not numgen's digit recognizer (kind {KIND!r})"
        )
    return Recognizer(RecognizerConfig(**config))


# --- using a trained recognizer ------------------------------------------------------------------


@torch.no_grad()
def _in_batches(
    fn: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    batch_size: int | None,
    device: torch.device,
) -> torch.Tensor:
    """``fn`` applied batch by batch on ``device`` (``batch_size`` None: in the device's
    :func:`~numgen.models.sampling.passes`), results concatenated on the CPU."""
    batches = (
        [images[rows] for rows in passes(len(images), device)]
        if batch_size is None
        else images.split(batch_size)
    )
    return torch.cat([fn(batch.to(device)).cpu() for batch in batches])


def predict(
    model: Recognizer, images: torch.Tensor, batch_size: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 1, 28, 28) in [0, 1] -> (labels int64 (N,), probabilities float32 (N, 10)).

    Puts the model in eval mode (BatchNorm running statistics, no dropout).
    """
    model.eval()
    device = next(model.parameters()).device
    probs = torch.softmax(_in_batches(model, images, batch_size, device).float(), dim=1)
    return probs.argmax(dim=1).numpy(), probs.numpy()


def extract_features(
    model: Recognizer, images: torch.Tensor, batch_size: int | None = None
) -> np.ndarray:
    """Images (N, 1, 28, 28) in [0, 1] -> penultimate-layer features float32 (N, features).

    Puts the model in eval mode.
    """
    model.eval()
    device = next(model.parameters()).device
    return _in_batches(model.features, images, batch_size, device).numpy()


@torch.no_grad()
def read(
    model: Recognizer, images: torch.Tensor, batch_size: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`predict` and :func:`extract_features` in one pass: images (N, 1, 28, 28) in [0, 1]
    -> (labels int64 (N,), probabilities float32 (N, 10), features float32 (N, features))."""
    model.eval()
    device = next(model.parameters()).device
    feats = _in_batches(model.features, images, batch_size, device)
    probs = torch.softmax(_in_batches(model.head, feats, batch_size, device), dim=1)
    return probs.argmax(dim=1).numpy(), probs.numpy(), feats.numpy()


def evaluate_accuracy(model: Recognizer, digits: Digits, batch_size: int | None = None) -> float:
    """Share of ``digits`` whose label the model predicts, in [0, 1]."""
    labels, _ = predict(model, to_tensor(digits.images), batch_size)
    return accuracy(labels, digits.labels)


# --- training ------------------------------------------------------------------------------------


def random_affine(
    x: torch.Tensor, generator: torch.Generator, config: RecognizerConfig
) -> torch.Tensor:
    """Shift, rotate and zoom each image (B, 1, 28, 28) by its own small random amount.

    The random numbers come from ``generator`` (on the CPU), so augmentation is reproducible.
    """
    n = len(x)

    def uniform(*shape: int) -> torch.Tensor:  # uniform in [-1, 1]
        return torch.rand(*shape, generator=generator) * 2 - 1

    angle = uniform(n) * math.radians(config.max_rotation)
    scale = 1 + uniform(n) * config.max_scale
    shift = uniform(n, 2) * config.max_shift * 2 / 28  # affine_grid spans 28 pixels by [-1, 1]
    # theta maps output to input coordinates: dividing by the scale enlarges the digit.
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    ).to(x)  # (B, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="zeros", align_corners=False)


def _train_epoch(
    model: Recognizer,
    images: torch.Tensor,
    labels: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    generator: torch.Generator,
) -> float:
    """One pass over shuffled, augmented training images; returns the mean cross-entropy."""
    model.train()
    config, device = model.config, next(model.parameters()).device
    total = 0.0
    for index in torch.randperm(len(images), generator=generator).split(config.batch_size):
        x = random_affine(images[index].to(device), generator, config)
        loss = F.cross_entropy(model(x), labels[index].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()  # one-cycle: the learning rate changes every step
        total += loss.item() * len(index)
    return total / len(images)


def train_recognizer(
    train: Digits,
    test: Digits,
    config: RecognizerConfig | None = None,
    device: str | torch.device = "cpu",
    progress: Callable[[dict], None] | None = None,
) -> tuple[Recognizer, dict]:
    """Train a recognizer on ``train`` and measure its accuracy on ``test`` after every epoch.

    Adam with a one-cycle learning-rate schedule, cross-entropy, random affine augmentation.
    Seeded by ``config.seed``: weights, shuffling, augmentation and dropout are reproducible (on
    the CPU, given the same number of threads); the caller's global random state is left as it was.

    ``progress``, if given, is called after each epoch with that epoch's row of the history:
    ``{"epoch", "train_loss", "test_accuracy", "seconds"}`` (seconds since training began).
    Returns the model in eval mode and ``{"test_accuracy", "epochs", "seconds", "train_size",
    "test_size", "history"}``.
    """
    config = config or RecognizerConfig()
    images, labels = to_tensor(train.images), torch.from_numpy(train.labels)
    history = []
    with torch.random.fork_rng():  # dropout and initialisation draw from the global generator
        torch.manual_seed(config.seed)
        generator = torch.Generator().manual_seed(config.seed)
        model = Recognizer(config).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        steps = config.epochs * math.ceil(len(images) / config.batch_size)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=steps)
        start = time.perf_counter()
        for epoch in range(1, config.epochs + 1):
            loss = _train_epoch(model, images, labels, optimizer, scheduler, generator)
            row = {
                "epoch": epoch,
                "train_loss": loss,
                "test_accuracy": evaluate_accuracy(model, test),
                "seconds": time.perf_counter() - start,
            }
            history.append(row)
            log.info(
                "epoch %(epoch)d: loss %(train_loss).4f, test accuracy %(test_accuracy).4f", row
            )
            if progress is not None:
                progress(row)
    metrics = {
        "test_accuracy": history[-1]["test_accuracy"],
        "epochs": config.epochs,
        "seconds": history[-1]["seconds"],
        "train_size": len(train),
        "test_size": len(test),
        "history": history,
    }
    return model.eval(), metrics
