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

import functools
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler

from numgen.processes import die_with_parent


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


def launch(nproc: int, argv: list[str], poll: float = 0.2) -> int:
    """Run ``python -m numgen ARGV`` in ``nproc`` ranks on this machine, as ``torchrun
    --standalone`` would (the same environment variables, a free port on 127.0.0.1), and return
    an honest exit code: 0 when every rank succeeded, else the first failing rank's (128 + the
    signal for a killed one). Rank 0 prints as usual; the others print nothing but their error,
    shown here in one line when rank 0 had none. A rank's failure ends the others (they would
    wait for it in a collective), and every rank dies with this process (:func:`die_with_parent`).
    """
    with socket.socket() as probe:  # a free port for the ranks' rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = {**os.environ, "WORLD_SIZE": str(nproc), "LOCAL_WORLD_SIZE": str(nproc),
            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "GROUP_RANK": "0"}  # fmt: skip
    start = functools.partial(die_with_parent, os.getpid())
    with tempfile.TemporaryFile("w+") as quiet:  # ranks above 0: stderr, read on failure
        ranks = [
            subprocess.Popen(
                [sys.executable, "-m", "numgen", *argv],
                preexec_fn=start,
                env={**base, "RANK": str(r), "LOCAL_RANK": str(r)},
                stdout=subprocess.DEVNULL if r else None,
                stderr=quiet if r else None,
            )  # fmt: skip
            for r in range(nproc)
        ]
        try:
            codes = _wait_for_failure(ranks, poll)
        finally:
            _stop(ranks)
        if not any(codes):
            return 0
        # rank 0's failure speaks for itself; another's is said here, in its own last line
        rank, code = next((r, c) for r, c in enumerate(codes) if c)
        if rank:
            quiet.seek(0)
            lines = [line for line in quiet.read().splitlines() if line.strip()]
            what = lines[-1] if lines else f"exit code {code}"
            print(f"rank {rank} of {nproc} failed: {what}", file=sys.stderr)
    return 128 - code if code < 0 else code


def _wait_for_failure(ranks: list[subprocess.Popen], poll: float, grace: float = 2.0) -> list:
    """The ranks' exit codes once all succeeded, or once one failed and the others had
    ``grace`` seconds to end too (they usually fail alike: rank 0 then speaks for all)."""
    while not any(codes := [p.poll() for p in ranks]):
        if all(c == 0 for c in codes):
            return codes
        time.sleep(poll)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(p.poll() is None for p in ranks):
        time.sleep(poll)
    return [p.poll() for p in ranks]


def _stop(ranks: list[subprocess.Popen]) -> None:
    """End the ranks still running: SIGTERM, then SIGKILL after 10 s."""
    for p in ranks:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in ranks:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


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
