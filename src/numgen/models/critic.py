"""The one-step family's critic: a small class-conditional projection discriminator (Miyato &
Koyama 2018, https://arxiv.org/abs/1802.05637), trained against real MNIST digits while the
student learns to draw digits it takes for real (``numgen.models.onestep``)."""

from __future__ import annotations

import torch
from torch import nn


class Critic(nn.Module):
    """A small projection discriminator: (B, 1, 28, 28), label weights (B, 10) -> score (B,),
    high for digits that look real for their label. Three stride-2 convs (28 -> 14 -> 7 -> 4)."""

    def __init__(self, channels: int, classes: int) -> None:
        super().__init__()
        c = channels
        self.convs = nn.Sequential(
            nn.Conv2d(1, c, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * c, 4 * c, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Linear(4 * c * 16, 4 * c), nn.LeakyReLU(0.2),
        )  # fmt: skip
        self.score = nn.Linear(4 * c, 1)
        self.project = nn.Linear(classes, 4 * c, bias=False)  # the label's direction

    def forward(self, x: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        h = self.convs(x * 2 - 1)
        return self.score(h)[:, 0] + (self.project(onehot) * h).sum(1)
