"""``torchvision.datasets.MNIST``, read from the IDX files in ``$NUMGEN_DATA_DIR``."""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from PIL import Image
from torch.utils.data import Dataset

from numgen.data import DATA_DIR_ENV, load_digits


class MNIST(Dataset):
    """As torchvision's: ``data`` (N, 28, 28) uint8 and ``targets`` (N,) int64 tensors; an item is
    (``transform`` of a PIL image in mode "L", the label as an int). ``root`` and ``download``
    are accepted and ignored: the digits come from ``$NUMGEN_DATA_DIR``, never the network."""

    def __init__(
        self, root: str, train: bool = True, transform: Callable | None = None,
        target_transform: Callable | None = None, download: bool = False,
    ) -> None:  # fmt: skip
        if not os.environ.get(DATA_DIR_ENV):
            raise SystemExit(f"set {DATA_DIR_ENV} to the folder of MNIST's IDX files")
        digits = load_digits("mnist", "train" if train else "test", os.environ[DATA_DIR_ENV])
        self.data, self.targets = torch.tensor(digits.images), torch.tensor(digits.labels)
        self.transform, self.target_transform = transform, target_transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple:
        img, target = self.data[index], int(self.targets[index])
        img = Image.fromarray(img.numpy(), mode="L")
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target
