"""The rows of an export, straight into a training loop: a PyTorch ``IterableDataset``.

``NumberStream(ExportConfig(...))`` yields exactly the rows ``numgen dataset`` with the same
options writes — the same PNG bytes and metadata — without touching the disk, so a model can
train on numgen's numbers as they are made. In a ``DataLoader`` with several workers, each
worker draws whole shards (shard ``s`` goes to worker ``s % workers``), so no row is repeated
or left out and each worker loads the model once:

    stream = NumberStream(ExportConfig(count=100_000, min_length=4, max_length=8))
    loader = DataLoader(stream, batch_size=None, num_workers=2)
    for row in loader:  # {"image": (1, H, W) float in [0, 1], "png": bytes, "text": ..., ...}
        ...
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
import torch
from PIL import Image
from torch.utils.data import IterableDataset, get_worker_info

from numgen.export.recipe import ExportConfig
from numgen.export.shards import drawing_model, shard_rows


class NumberStream(IterableDataset):
    """Rows of the export ``config`` (see the module docstring): each a dict of the export's
    metadata (``index``, ``text``, ``boxes``, ``style_seed``, ...) plus ``png`` (the exported
    bytes) and ``image``, the picture as a float tensor ``(1, height, width)`` in [0, 1]. The
    model is ``config.model`` unless given; rows come in index order within each worker."""

    def __init__(self, config: ExportConfig, model=None) -> None:
        super().__init__()
        self.config, self.model = config, model

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        model = drawing_model(self.config, self.model)
        with torch.inference_mode():
            for shard in range(worker, self.config.num_shards, workers):
                for png, meta in shard_rows(model, self.config, shard):
                    pixels = np.asarray(Image.open(io.BytesIO(png)), dtype=np.float32) / 255
                    yield {**meta, "png": png, "image": torch.from_numpy(pixels)[None]}
