"""``torchvision.transforms.ToTensor`` for the grey-scale PIL images of the MNIST stand-in."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image


class ToTensor:
    """A PIL image (H, W) in mode "L" -> a float tensor (1, H, W) in [0, 1], as torchvision's
    ``to_tensor``: a copy of the pixels, made channels-first and contiguous, divided by 255."""

    def __call__(self, pic: Image.Image) -> torch.Tensor:
        img = torch.from_numpy(np.array(pic, np.uint8, copy=True))
        img = img.view(pic.size[1], pic.size[0], 1).permute((2, 0, 1)).contiguous()
        return img.to(torch.get_default_dtype()).div(255)
