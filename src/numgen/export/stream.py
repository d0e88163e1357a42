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

A DataLoader sends every item between processes as its own message, which costs about half a
millisecond of the cores a row: more than the cvae takes to draw one. ``stream.rows(workers)``
runs the same DataLoader on messages of ``ROWS_PER_MESSAGE`` rows, their pictures as arrays
(a tensor crossing processes gets a shared-memory file of its own), and yields the rows one by
one, their pictures as tensors again: the same rows, 1.3 times as many a second with the
onestep, 4.6 times with the cvae (bench/results/dataset_speed_stream_avx512.md).
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterator

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from numgen.export.recipe import ExportConfig
from numgen.export.shards import drawing_model, shard_rows

ROWS_PER_MESSAGE = 64  # rows a worker of :meth:`NumberStream.rows` sends in one message


class NumberStream(IterableDataset):
    """Rows of the export ``config`` (see the module docstring): each a dict of the export's
    metadata (``index``, ``text``, ``boxes``, ``style_seed``, ...) plus ``png`` (the exported
    bytes) and ``image``, the picture as a float tensor ``(1, height, width)`` in [0, 1]. The
    model is ``config.model`` unless given; rows come in index order within each worker."""

    def __init__(self, config: ExportConfig, model=None) -> None:
        super().__init__()
        self.config, self.model = config, model

    def __iter__(self) -> Iterator[dict]:
        for row in self._rows_with_arrays():
            row["image"] = torch.from_numpy(row["image"])[None]
            yield row

    def rows(self, workers: int = 2) -> Iterator[dict]:
        """The rows, drawn by ``workers`` DataLoader processes (0: this one), each as iterating
        the stream gives it, in a fixed order: every worker's rows in index order, the workers
        taking turns ``ROWS_PER_MESSAGE`` rows at a time."""
        messages = DataLoader(
            _Messages(self), batch_size=None, num_workers=workers, collate_fn=_as_sent
        )
        for message in messages:
            for row in message:
                row["image"] = torch.from_numpy(row["image"])[None]
                yield row

    def _rows_with_arrays(self) -> Iterator[dict]:
        """This worker's rows, each picture a ``(height, width)`` float32 array."""
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        model = drawing_model(self.config, self.model)
        with torch.inference_mode():
            for shard in range(worker, self.config.num_shards, workers):
                for png, meta in shard_rows(model, self.config, shard):
                    pixels = np.asarray(Image.open(io.BytesIO(png)), dtype=np.float32) / 255
                    yield {**meta, "png": png, "image": pixels}


class _Messages(IterableDataset):
    """A stream's rows in lists of ``ROWS_PER_MESSAGE``, pictures as arrays: what a worker of
    :meth:`NumberStream.rows` sends."""

    def __init__(self, stream: NumberStream) -> None:
        super().__init__()
        self.stream = stream

    def __iter__(self) -> Iterator[list[dict]]:
        rows = self.stream._rows_with_arrays()
        while message := list(itertools.islice(rows, ROWS_PER_MESSAGE)):
            yield message


def _as_sent(message: list[dict]) -> list[dict]:
    """The DataLoader's collate step left out: its default turns arrays into tensors in the
    worker, which then cross processes one shared-memory file each."""
    return message
