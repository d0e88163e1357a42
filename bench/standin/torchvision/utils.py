"""``torchvision.utils.save_image``: a grid of images (B, C, H, W) in [0, 1] as one PNG."""

from __future__ import annotations

import math

import torch
from PIL import Image


def save_image(tensor: torch.Tensor, fp: str, nrow: int = 8, padding: int = 2) -> None:
    """As torchvision's (``make_grid`` with its defaults, then rounding to 8 bits): ``nrow``
    images a row, ``padding`` black pixels around each, grey images drawn as RGB."""
    images = tensor.detach().cpu()
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    b, c, h, w = images.shape
    cols, rows = min(nrow, b), math.ceil(b / nrow)
    grid = torch.zeros(c, rows * (h + padding) + padding, cols * (w + padding) + padding)
    for i, image in enumerate(images):
        top, left = (i // cols) * (h + padding) + padding, (i % cols) * (w + padding) + padding
        grid[:, top : top + h, left : left + w] = image
    pixels = grid.mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to(torch.uint8).numpy()
    Image.fromarray(pixels).save(fp)
