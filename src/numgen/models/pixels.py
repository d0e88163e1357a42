"""What the flow families do to every digit's pixels, apart from the networks: each digit's own
seeded start noise (:func:`digit_noise`), and the removal of stray dots from a drawn digit
(:func:`despeckle`)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from numgen.data import INK_LEVEL

SPECK_INK = 1.0  # a detached bit of ink worth less than one full pixel is a speck (despeckle)


def digit_noise(seeds: torch.Tensor | None, n: int, device: torch.device) -> torch.Tensor:
    """Start noise ``(n, 1, 28, 28)``, each digit's from its own seed, so a digit's pixels never
    depend on what else is drawn beside it."""
    seeds = torch.zeros(n, dtype=torch.long) if seeds is None else torch.as_tensor(seeds)
    if seeds.shape != (n,):
        raise ValueError(f"give one seed per digit: {n} seeds, got shape {tuple(seeds.shape)}")
    noise = torch.empty(n, 1, 28, 28)
    generator = torch.Generator()
    for i, seed in enumerate(seeds.tolist()):
        noise[i] = torch.randn(1, 28, 28, generator=generator.manual_seed(seed))
    return noise.to(device)


def despeckle(images: torch.Tensor) -> torch.Tensor:
    """Images ``(N, 1, H, W)`` clamped to [0, 1], with every *speck* removed: a group of touching
    pixels (8-connected) above ``INK_LEVEL`` holding less than ``SPECK_INK`` pixels' worth of ink.

    A few steps from the noisy start leave such dots where the noise was not cleared: 3 % of the
    bundled flow's digits hold a detached bit of ink under one pixel's worth, against 1.8 % of
    MNIST's test digits, and beside a digit in a number a dot reads as a digit of its own.
    Strokes, even a detached bar of a 5, hold far more ink.

    Groups are found by spreading each pixel's number to its inked neighbours (a 3×3 max-pool):
    a group with less ink than a speck has fewer than SPECK_INK / INK_LEVEL pixels, so after that
    many spreads it is named whole by its largest pixel number; a group whose pixels still border
    another name is larger, and kept. (SciPy's ``ndimage.label`` finds the same groups, but
    importing it costs 0.1 s of every ``numgen write``.)
    """
    x = images.clamp(0, 1)
    inked = x > INK_LEVEL
    if not inked.any():
        return x
    n, _, h, w = x.shape
    # the images along the channel axis, in channels-last memory: there max_pool2d runs ~4×
    # faster on a CPU than over (N, 1, H, W), with the same results
    planes = x.reshape(1, n, h, w).contiguous(memory_format=torch.channels_last)
    inked = planes > INK_LEVEL
    # pixel numbers in int16 on a CPU, where max_pool2d takes integers and runs ~1.5× faster
    # than in float; CUDA's max_pool2d takes floats only (both hold every number exactly)
    dtype = torch.int16 if x.device.type == "cpu" else torch.float32
    mask = inked.to(dtype)  # made once: each multiplication by the bools would convert them
    pixel = torch.arange(1, h * w + 1, device=x.device, dtype=dtype).view(1, 1, h, w)
    group = pixel * mask  # 0 on the background
    for _ in range(math.ceil(SPECK_INK / INK_LEVEL)):
        group = F.max_pool2d(group, 3, stride=1, padding=1).mul_(mask)
    largest_near = F.max_pool2d(group, 3, stride=1, padding=1)
    smallest_near = -F.max_pool2d(-torch.where(inked, group, h * w + 1), 3, stride=1, padding=1)
    unfinished = inked & ((largest_near != group) | (smallest_near != group))
    key = torch.arange(n, device=x.device).view(1, n, 1, 1) * (h * w + 1) + group.long()
    ink = torch.zeros(n * (h * w + 1), device=x.device)
    ink.index_add_(0, key.flatten(), (planes * inked).float().flatten())
    ink.index_fill_(0, key[unfinished], math.inf)  # part of a larger group: never a speck
    kept = planes.masked_fill(inked & (ink[key] < SPECK_INK), 0.0)
    return kept.contiguous().view(n, 1, h, w)
