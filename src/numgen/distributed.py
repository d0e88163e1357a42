"""Data-parallel training across processes (PyTorch DDP), launched by ``torchrun``.

``torchrun --nproc-per-node N -m numgen train RUN ...`` starts N copies of the training loop and
tells each, through environment variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``), who it is. Each process (a *rank*) then

- holds a full copy of the model and trains on its own slice of every global batch
  (:func:`shard_order`: the slices of all ranks together are exactly a single process's batch);
- averages its gradients with the other ranks' inside ``backward()`` (DDP's all-reduce, over
  gloo on CPUs and NCCL on CUDA GPUs), so every replica takes the same optimiser step;
- leaves checkpoints, logs and progress to rank 0.

A single process (no ``torchrun``, or ``--nproc-per-node 1``) gets a :class:`Context` of one
rank and no process group: the loop runs exactly as without this module.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler


@dataclass(frozen=True)
class Context:
    """Where this process stands: its rank among ``world_size`` processes and its device."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints and logs and shows progress."""
        return self.rank == 0


def launched_world_size() -> int:
    """How many processes ``torchrun`` started for this run (1 when it did not start us)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """False only in the ranks above 0 of a ``torchrun`` launch, which print nothing."""
    return int(os.environ.get("RANK", "0")) == 0


@contextmanager
def process_group(device: torch.device) -> Iterator[Context]:
    """This process's :class:`Context` on ``device``, inside the process group that ``torchrun``
    set up (joined here, left on exit). Under ``torchrun`` a CUDA device becomes this process's
    own GPU, ``cuda:LOCAL_RANK``. A single process gets a one-rank Context and no group."""
    world_size = launched_world_size()
    if world_size == 1:
        yield Context(device=device)
        return
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    joined = not dist.is_initialized()
    if joined:  # NCCL moves CUDA tensors between GPUs; gloo is PyTorch's CPU backend
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield Context(dist.get_rank(), dist.get_world_size(), device)
        dist.barrier()  # no rank leaves the group while another may still talk to it
    finally:
        if joined:
            dist.destroy_process_group()


class LossOf(nn.Module):
    """A module whose forward is ``model.loss``. DDP synchronises gradients only for what runs
    through the forward of the module it wraps, and a model's training objective is its
    ``loss`` method (any family), so DDP wraps this module rather than the model itself."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        return self.model.loss(*args, **kwargs)


def loss_function(model: nn.Module, context: Context):
    """What the loop calls for a batch's loss: ``model.loss`` alone, or through DDP."""
    if not context.distributed:
        return model.loss
    device_ids = [context.device.index] if context.device.type == "cuda" else None
    return DistributedDataParallel(LossOf(model), device_ids=device_ids)


def shard_order(n: int, seed: int, epoch: int, context: Context) -> torch.Tensor:
    """This rank's indices of an epoch's shuffled order of ``n`` items, by PyTorch's
    ``DistributedSampler`` with per-epoch seeding: the permutation of ``seed + epoch``, rank r
    taking positions r, r + W, r + 2W ... (W ranks; the last few items repeated so that every
    rank has as many). Batch i of each rank (``B / W`` items) therefore covers the same items as
    batch i (``B`` items) of a single process's order."""
    sampler = DistributedSampler(
        range(n), num_replicas=context.world_size, rank=context.rank, shuffle=True, seed=seed
    )
    sampler.set_epoch(epoch)
    return torch.tensor(list(sampler))


def all_sum(values: dict[str, float], context: Context) -> dict[str, float]:
    """The sums of ``values`` over all ranks (each rank gets them)."""
    if not context.distributed:
        return values
    keys = sorted(values)
    # gloo reduces CPU tensors, NCCL CUDA tensors
    where = context.device if context.device.type == "cuda" else torch.device("cpu")
    total = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=where)
    dist.all_reduce(total)
    return dict(zip(keys, total.tolist(), strict=True))
