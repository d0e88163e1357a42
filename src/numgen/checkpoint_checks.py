"""Checking a run's training state before trusting it, and the memory a training needs: the
registry-aware checks above :mod:`numgen.files` (which reads and checks any weights file).

A training state's header is compared with the model and optimiser its own config implies —
built on PyTorch's ``meta`` device, which allocates nothing — before any tensor is made from the
bytes; then its checksum and values. Errors name the file and the kind of damage.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from numgen.config import check_memory, gigabytes
from numgen.files import (
    DamagedFile,
    Spec,
    checksum,
    describe,
    json_field,
    mismatches,
    read_weights,
    specs_of,
    tensors_of,
)
from numgen.models import Generator, build_model, config_from_dict

# what a training state's metadata holds ("checksum" and "metrics" since numgen 0.1.1)
STATE_METADATA = {
    "epoch",
    "model_config",
    "train_config",
    "param_groups",
    "checksum",
    "metrics",
}


def expected_specs(model_config: object) -> tuple[dict[str, Spec], list[tuple[int, ...]]]:
    """({weight name: (dtype, shape)}, [parameter shapes in optimiser order]) of the model that
    ``model_config`` builds — built on the ``meta`` device, so nothing is allocated."""
    with torch.device("meta"):
        model: Generator = build_model(model_config)
    return specs_of(model), [tuple(p.shape) for p in model.parameters() if p.requires_grad]


class _CountOutputs(TorchDispatchMode):
    """Adds up the bytes of every tensor the operations under it produce."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        out = func(*args, **(kwargs or {}))
        for tensor in torch.utils._pytree.tree_leaves(out):
            if isinstance(tensor, torch.Tensor):
                self.bytes += tensor.numel() * tensor.element_size()
        return out


# when a family's loss cannot run on the meta device: a generous guess per 28×28 image
FALLBACK_BYTES_PER_IMAGE = 1 << 20


def training_bytes(model_config: object, batch_size: int) -> tuple[int, int]:
    """(bytes of the weights with their gradients and Adam's two moments, bytes of one batch's
    activations): measured by loss and backward passes on the ``meta`` device, which allocates
    nothing, for batches of 2 and 4 — their difference is what each image adds."""
    with torch.device("meta"):
        model: Generator = build_model(model_config)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    classes = getattr(model_config, "num_classes", 10)
    per_image = None
    for soft in (False, True):  # a check that reads labels' values cannot run on meta: blend
        try:
            produced = [_produced(model, n, classes, soft) for n in (2, 4)]
        except (RuntimeError, NotImplementedError, ValueError):
            continue
        per_image = (produced[1] - produced[0]) // 2
        break
    return 4 * weights, (per_image or FALLBACK_BYTES_PER_IMAGE) * batch_size


def _produced(model: Generator, n: int, classes: int, soft: bool) -> int:
    """Bytes produced by one loss and backward pass over ``n`` meta images."""
    x = torch.zeros(n, 1, 28, 28, device="meta")
    labels = torch.zeros((n, classes) if soft else (n,), device="meta",
                         dtype=torch.float32 if soft else torch.long)  # fmt: skip
    with _CountOutputs() as counter:
        model.loss(x, labels)["loss"].backward()
    return counter.bytes


@dataclass
class Checkpoint:
    """A run's training state, checked: everything :func:`restore` needs, and the metrics line
    of its epoch (None in checkpoints older than that field)."""

    epoch: int
    model_config: object
    train_config: object
    tensors: dict[str, torch.Tensor]
    param_groups: list
    record: dict | None


def read_train_state(path: Path, train_config_class: type) -> Checkpoint:
    """A training state file, checked whole before anything is trusted: its header against its
    own model config (names, shapes, the optimiser's entries), its metadata, the memory it
    needs, its checksum and its values. :class:`DamagedFile` says what is wrong."""
    specs, metadata, data = read_weights(path, f"resuming from {path}")
    unknown = set(metadata) - STATE_METADATA
    if unknown:
        raise DamagedFile(path, f"unknown metadata {sorted(unknown)[0][:40]!r}")
    epoch = metadata.get("epoch", "")
    if not (
        epoch.isascii()
        and epoch.isdigit()
        and 1 <= int(epoch) <= train_config_class.LIMITS["epochs"].high
    ):
        raise DamagedFile(path, f"its epoch reads {epoch[:20]!r}")
    model_config = config_from_dict(json_field(path, metadata, "model_config"))
    train_config = train_config_class.from_dict(json_field(path, metadata, "train_config"))
    param_groups = json_field(path, metadata, "param_groups")
    record = json_field(path, metadata, "metrics") if "metrics" in metadata else None
    if int(epoch) > train_config.epochs or not isinstance(param_groups, list):
        raise DamagedFile(path, "its metadata does not add up")
    if record is not None and not (isinstance(record, dict) and record.get("epoch") == int(epoch)):
        raise DamagedFile(path, "its metrics record is not the epoch's")
    expected, params = expected_specs(model_config)
    problems = mismatches(
        {k: v for k, v in specs.items() if k.startswith("model.")},
        {f"model.{k}": v for k, v in expected.items()},
    )
    optimised = set()
    for name, (_, shape) in specs.items():
        if name.startswith("model."):
            continue
        part = name.split(".")
        index = (
            int(part[1])
            if len(part) == 3 and part[0] == "optim" and part[1].isascii() and part[1].isdigit()
            else -1
        )
        if not (0 <= index < len(params) and shape in (params[index], ())):
            problems.append(f"{name} is not part of this model's optimiser state")
        optimised.add(index)
    if optimised != set(range(len(params))):
        problems.append("the optimiser state misses parameters")
    if problems:
        raise DamagedFile(path, f"it does not fit its model_config: {describe(problems)}")
    tensors = tensors_of(path, data)
    if "checksum" in metadata and checksum(tensors, metadata) != metadata["checksum"]:
        raise DamagedFile(path, "its bytes changed on disk (the checksum differs)")
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise DamagedFile(path, f"{name} holds NaN or infinite values")
    return Checkpoint(int(epoch), model_config, train_config, tensors, param_groups, record)


def check_training_memory(model_config: object, batch_size: int) -> None:
    """Refuse, before any work, a model or batch that would not fit in memory."""
    weights, batch = training_bytes(model_config, batch_size)
    data = 70_000 * 28 * 28 * 4  # all of MNIST as float32 tensors
    check_memory(
        f"training this model (weights, gradients and Adam state {gigabytes(weights)}; a batch "
        f"of {batch_size:,} {gigabytes(batch)})", weights + batch + data,
        "choose a smaller --hidden, --depth or --batch-size",
    )  # fmt: skip


__all__ = [
    "Checkpoint", "check_training_memory", "expected_specs", "read_train_state", "training_bytes",
]  # fmt: skip
