"""What the web app keeps for each model it serves (:class:`Served`), and what a server process
does once when it starts (:func:`prepare_process`, :func:`freeze_survivors`): settings of the
whole process, made by ``numgen serve`` and by each worker process it starts, never by
:func:`numgen.web.app.create_app` itself, so that importing or building the app changes
nothing global.
"""

from __future__ import annotations

import gc
import hashlib
import io
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from numgen import compose, generate, plots
from numgen.data import Digits, to_tensor
from numgen.legibility import Checker
from numgen.models import Generator
from numgen.version import __version__
from numgen.web.batching import BatchedModel, chunk_rows
from numgen.web.uploads import keep_memory_returnable


@dataclass
class Served:
    """A loaded model and what the app keeps ready for it."""

    name: str
    model: Generator
    batched: BatchedModel  # the model, its drawing batched with other requests'
    scatter: dict | None  # the explorer's test-digit encodings, for models with a 2-D latent
    writer: compose.Writer | None  # for conditional models; keeps the recognizer once loaded

    def info(self) -> dict:
        config = self.model.config
        return {
            "name": self.name,
            "kind": config.kind,
            "arch": getattr(config, "arch", None),
            "latent_dim": self.model.style_dim,
            "likelihood": getattr(config, "likelihood", None),
            "conditional": self.model.conditional,
            "explorer": self.scatter is not None,
            "style_upload": self.model.can_encode_style,
        }


@torch.inference_mode()
def scatter(name: str, model: Generator, test: Digits) -> dict:
    """The test digits encoded by a model with a 2-D latent plane: points, labels, bounds."""
    labels = torch.from_numpy(test.labels).long() if model.conditional else None
    z = model.encode_style(to_tensor(test.images).to(model.device), labels).cpu().numpy()
    return {
        "model": name,
        "points": np.round(z.astype(np.float64), 4).tolist(),  # float64: no float32 digits noise
        "labels": test.labels.tolist(),
        "bounds": {
            "x_min": float(z[:, 0].min()), "x_max": float(z[:, 0].max()),
            "y_min": float(z[:, 1].min()), "y_max": float(z[:, 1].max()),
        },
    }  # fmt: skip


def weights_digest(models: dict[str, Generator], precision: str = "fp32") -> str:
    """A hash of the served models' names, weights and how they draw (``sampling``), of the
    served ``precision`` and of numgen's version: the ETag's seed, so a restart with other
    weights or settings under the same name never answers 304 wrongly."""
    digest = hashlib.blake2b(f"{__version__} {precision}".encode(), digest_size=16)
    for name, model in models.items():
        digest.update(name.encode())
        digest.update(repr(model.sampling).encode())
        for key, tensor in model.state_dict().items():
            digest.update(key.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def warm_up(served: Iterable[Served], checker: Checker | None = None) -> None:
    """Run each model (on the batcher's chunk of rows) and writer once (checked by ``checker``
    where the model checks), and encode a PNG: the first call of each loads code (Pillow's
    plugins, PyTorch's kernels), which would otherwise stall the first requests."""
    for chosen in served:
        digit = 0 if chosen.model.conditional else None
        rows = chunk_rows(chosen.model)
        generate.draw(chosen.model, np.zeros((rows, chosen.model.style_dim)), digit)
        if chosen.writer is not None:
            png_bytes(compose.write(chosen.model, "0", height=56, checker=checker))


def png_bytes(image: np.ndarray | Image.Image) -> bytes:
    """A grey PNG of a 2-D array (floats in [0, 1] or uint8) or of a PIL image."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(plots.to_uint8(image), mode="L")
    buffer = io.BytesIO()
    # zlib level 1: ~7 % larger than the default 6 for these pictures, and half the time
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def prepare_process(threads: int | None) -> None:
    """Settings of a server process, before its models load: PyTorch's ``threads`` (a server's
    choice: its batches are small, and a second thread spinning for work costs more than it saves
    while requests need the cores; None keeps PyTorch's) and glibc's malloc arenas
    (:func:`numgen.web.uploads.keep_memory_returnable`)."""
    if threads is not None:
        torch.set_num_threads(threads)
    keep_memory_returnable()


def freeze_survivors() -> None:
    """Once the app is built: a full garbage collection walks every object the process holds
    (~360,000 with the models, PyTorch and the web stack, 170 ms on a 2-core machine, a stall of
    every request in flight). They live as long as the server, so they leave the collector's
    sight (``gc.freeze``): it then walks only what requests create."""
    gc.collect()
    gc.freeze()
