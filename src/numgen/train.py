"""Training: one visible loop, checkpoints written atomically every epoch, resumable.

A run directory holds

    config.json, model.safetensors   the latest good model (``numgen.load(run_dir)`` works)
    train_state.safetensors          weights + Adam state + epoch + train config, one atomic file
    metrics.jsonl                    one JSON line per finished epoch

Each epoch shuffles and draws its noise from generators seeded by (seed, epoch), so a run resumed
from epoch k ends with exactly the weights of an uninterrupted run.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from numgen.data import Digits, load_digits, to_tensor
from numgen.errors import NumgenError
from numgen.hub import atomic_write, place, save_pretrained, save_weights
from numgen.models import Generator, VAEConfig, build_model, config_from_dict

log = logging.getLogger(__name__)

STATE_FILE = "train_state.safetensors"
METRICS_FILE = "metrics.jsonl"


class TrainingError(NumgenError):
    """Training cannot start or go on; the message says why and what to do."""


@dataclass
class TrainConfig:
    """How to train. The defaults are the original project: 10 epochs, batch 128, Adam 1e-3."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0
    dataset: str = "mnist"  # "mnist" (IDX files) or "embedded" (offline 5k subset)
    data_dir: str | None = None
    limit: int | None = None  # train on the first N training digits only (quick experiments)
    kl_warmup: float = 0.0  # epochs over which the KL weight ramps linearly from 0 up to beta

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs={self.epochs}: must be at least 1")
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size}: must be at least 1")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr={self.lr}: must be a positive finite number")
        if not self.kl_warmup >= 0:
            raise ValueError(f"kl_warmup={self.kl_warmup}: must be >= 0 epochs")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit={self.limit}: must be at least 1")
        if self.dataset not in ("mnist", "embedded"):
            raise ValueError(f"dataset={self.dataset!r}: use 'mnist' or 'embedded'")

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def select_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA, then Apple's MPS, then the CPU; anything else is passed to torch."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise TrainingError(f"unknown device {name!r}; use auto, cpu, cuda or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError(
            "--device cuda asked for, but no CUDA GPU is available; use --device cpu"
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise TrainingError("--device mps asked for, but MPS is not available; use --device cpu")
    return device


def epoch_generators(
    seed: int, epoch: int, device: torch.device
) -> tuple[torch.Generator, torch.Generator]:
    """(shuffle generator on the CPU, noise generator on ``device``), fixed by seed and epoch."""
    base = seed * 1_000_003 + epoch
    return torch.Generator().manual_seed(base), torch.Generator(device).manual_seed(base)


# --- one epoch -----------------------------------------------------------------------------------

BatchHook = Callable[[int, int, float], None]  # (batches done, batches total, batch loss)


def train_epoch(
    model: Generator, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
    batch_size: int, shuffle: torch.Generator, noise: torch.Generator,
    on_batch: BatchHook | None = None, kl_weight: Callable[[int], float] | None = None,
) -> dict[str, float]:  # fmt: skip
    """One pass over (x, y) in shuffled minibatches; returns the mean loss parts per image.
    The model computes its own loss (any family); ``kl_weight(i)`` gives the KL weight for
    batch ``i`` in families with a KL term (default: the model's own)."""
    model.train()
    order = torch.randperm(len(x), generator=shuffle).to(x.device)
    totals: dict[str, float] = {}
    n_batches = math.ceil(len(x) / batch_size)
    for i in range(n_batches):
        index = order[i * batch_size : (i + 1) * batch_size]
        xb, yb = x[index], y[index]
        parts = model.loss(xb, yb, generator=noise, kl_weight=kl_weight(i) if kl_weight else None)
        loss = parts["loss"].item()
        if not math.isfinite(loss):
            raise TrainingError(f"the loss became {loss} at batch {i + 1}; try a lower --lr")
        optimizer.zero_grad(set_to_none=True)
        parts["loss"].backward()
        optimizer.step()
        for key, value in parts.items():
            totals[key] = totals.get(key, 0.0) + value.item() * len(xb)
        if on_batch:
            on_batch(i + 1, n_batches, loss)
    return {key: value / len(x) for key, value in totals.items()}


@torch.no_grad()
def evaluate_loss(
    model: Generator, x: torch.Tensor, y: torch.Tensor, seed: int = 0, batch_size: int = 1000
) -> dict[str, float]:
    """Mean loss parts per image on held-out data, with fixed noise so epochs compare fairly."""
    model.eval()
    noise = torch.Generator(x.device).manual_seed(seed)
    totals: dict[str, float] = {}
    for start in range(0, len(x), batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        for key, value in model.loss(xb, yb, generator=noise).items():
            totals[key] = totals.get(key, 0.0) + value.item() * len(xb)
    return {key: value / len(x) for key, value in totals.items()}


def warmup_schedule(
    beta: float, config: TrainConfig, epoch: int, n_train: int
) -> Callable[[int], float]:
    """KL weight per batch of ``epoch``: rising linearly from 0 to ``beta`` over the first
    ``config.kl_warmup`` epochs (Bowman et al. 2016), which keeps a small latent from collapsing
    onto the prior before the decoder has learnt to use it; then ``beta``."""
    batches = math.ceil(n_train / config.batch_size)
    warmup_steps = config.kl_warmup * batches

    def weight(i: int) -> float:
        step = (epoch - 1) * batches + i + 1
        return beta if step >= warmup_steps else beta * step / warmup_steps

    return weight


# --- checkpoints ---------------------------------------------------------------------------------


def save_checkpoint(
    run_dir: Path,
    model: Generator,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    train_config: TrainConfig,
) -> None:
    """Write the training state (one atomic file), then the loadable model files."""
    opt = optimizer.state_dict()
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    for index, state in opt["state"].items():
        tensors.update({f"optim.{index}.{k}": v for k, v in state.items()})
    metadata = {
        "epoch": str(epoch),
        "model_config": json.dumps(model.config.to_dict()),
        "train_config": json.dumps(asdict(train_config)),
        "param_groups": json.dumps(opt["param_groups"]),
    }
    save_weights(run_dir / STATE_FILE, tensors, metadata)
    save_pretrained(model, run_dir)


def read_checkpoint(run_dir: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(metadata, tensors) of a run's training state; a clear error when there is none."""
    path = run_dir / STATE_FILE
    if not path.is_file():
        raise TrainingError(
            f"{run_dir}: nothing to resume (no {STATE_FILE}); start without --resume"
        )
    with safe_open(str(path), "pt") as f:
        metadata = f.metadata()
    return metadata, load_file(str(path))


def restore(
    model: Generator,
    optimizer: torch.optim.Optimizer,
    tensors: dict[str, torch.Tensor],
    metadata: dict,
) -> None:
    """Load weights and Adam state saved by :func:`save_checkpoint`."""
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict(
        {"state": state, "param_groups": json.loads(metadata["param_groups"])}
    )


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The per-epoch records of a run, oldest first."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --- the loop ------------------------------------------------------------------------------------


def load_training_data(config: TrainConfig) -> tuple[Digits, Digits]:
    train = load_digits(config.dataset, "train", config.data_dir)
    test = load_digits(config.dataset, "test", config.data_dir)
    if config.limit:
        train = train.subset(config.limit)
    return train, test


def train(
    run_dir: str | Path,
    model_config: object | None = None,
    train_config: TrainConfig | None = None,
    device: str = "auto",
    resume: bool = False,
    on_batch: BatchHook | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    base: Generator | None = None,
) -> Generator:
    """Train a model of any family into ``run_dir`` and return it. With ``resume`` the model and
    train configs are read back from the run's checkpoint (``train_config.epochs`` may raise the
    epoch target). ``base`` is a trained model the new one builds on (the CVAE that a flow
    refines): the new model adopts its weights before the first epoch."""
    run_dir = Path(run_dir)
    dev = select_device(device)
    start_epoch, state = 0, None
    if resume:
        metadata, tensors = read_checkpoint(run_dir)
        start_epoch = int(metadata["epoch"])
        model_config = config_from_dict(json.loads(metadata["model_config"]))
        saved = TrainConfig.from_dict(json.loads(metadata["train_config"]))
        if train_config is not None:
            saved.epochs = train_config.epochs
        train_config, state = saved, (metadata, tensors)
    model_config = model_config or VAEConfig()
    train_config = train_config or TrainConfig()

    # 1. data, as float tensors on the device (all of MNIST is ~220 MB as float32)
    train_set, test_set = load_training_data(train_config)
    x_train, y_train = (
        to_tensor(train_set.images).to(dev),
        torch.from_numpy(train_set.labels).to(dev),
    )
    x_test, y_test = to_tensor(test_set.images).to(dev), torch.from_numpy(test_set.labels).to(dev)

    # 2. model and optimiser, fresh (seeded) or restored
    torch.manual_seed(train_config.seed)
    model = build_model(model_config)
    if base is not None and not state:
        model.adopt(base)
    model = place(model, dev)
    trainable = [p for p in model.parameters() if p.requires_grad]  # a flow's base stays frozen
    optimizer = torch.optim.Adam(trainable, lr=train_config.lr)
    if state:
        restore(model, optimizer, state[1], state[0])
        keep = [r for r in read_metrics(run_dir) if r["epoch"] <= start_epoch]
        _write_metrics(run_dir, keep)
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_metrics(run_dir, [])
    log.info(
        "training %s on %s (%d digits) on %s",
        model_config.kind,
        train_set.source,
        len(train_set),
        dev,
    )

    if train_config.kl_warmup and not hasattr(model_config, "beta"):
        raise TrainingError(f"kl_warmup: a {model_config.kind} model has no KL term to warm up")

    # 3. epochs: train, evaluate, checkpoint, log
    for epoch in range(start_epoch + 1, train_config.epochs + 1):
        shuffle, noise = epoch_generators(train_config.seed, epoch, dev)
        kl_weight = (
            warmup_schedule(model_config.beta, train_config, epoch, len(x_train))
            if train_config.kl_warmup
            else None
        )
        started = time.perf_counter()
        train_parts = train_epoch(
            model, optimizer, x_train, y_train, train_config.batch_size,
            shuffle, noise, on_batch, kl_weight,
        )  # fmt: skip
        seconds = time.perf_counter() - started
        test_parts = evaluate_loss(model, x_test, y_test, seed=train_config.seed)
        record = {
            "epoch": epoch,
            **{f"train_{k}": v for k, v in train_parts.items()},
            **{f"test_{k}": v for k, v in test_parts.items()},
            "seconds": seconds,
            "images_per_s": len(x_train) / seconds,
        }
        save_checkpoint(run_dir, model, optimizer, epoch, train_config)
        with open(run_dir / METRICS_FILE, "a") as f:
            f.write(json.dumps(record) + "\n")
        if on_epoch:
            on_epoch(record)
    return model.eval()


def _write_metrics(run_dir: Path, records: list[dict]) -> None:
    text = "".join(json.dumps(r) + "\n" for r in records)
    atomic_write(run_dir / METRICS_FILE, lambda tmp: tmp.write_text(text))
