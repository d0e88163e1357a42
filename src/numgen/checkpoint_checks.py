"""Checking weight files before trusting them: the safetensors header against the config, then
the values.

A safetensors file begins with an 8-byte length and a JSON header naming every tensor's dtype,
shape and byte range. A file to load is read once (:func:`read_weights`, after checking that
memory holds it); its header (:func:`parse_header`) is compared with the shapes a config implies
— built on PyTorch's ``meta`` device, which allocates nothing — before any tensor is made from
the bytes, and :func:`check_finite` then refuses NaN or infinite weights and changed bytes.
:func:`read_header` reads the header alone. Errors name the file and the kind of damage.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import safetensors.torch
import torch
from safetensors import SafetensorError
from torch.utils._python_dispatch import TorchDispatchMode

from numgen.config import ConfigError, check_memory, gigabytes, parse_json
from numgen.errors import NumgenError
from numgen.models import Generator, build_model, config_from_dict

MAX_HEADER_BYTES = 100 << 20  # safetensors' own cap on the header
DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2,
    "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip
TORCH_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
                torch.float64: "F64", torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8",
                torch.bool: "BOOL"}  # fmt: skip

Spec = tuple[str, tuple[int, ...]]
# what a training state's metadata holds ("checksum" and "metrics" since numgen 0.1.1)
STATE_METADATA = {
    "epoch",
    "model_config",
    "train_config",
    "param_groups",
    "checksum",
    "metrics",
}  # (safetensors dtype, shape)


class DamagedFile(NumgenError):
    """A weights file that is damaged or does not fit its config; ``kind`` says how."""

    def __init__(self, path: str | Path, kind: str) -> None:
        super().__init__(f"{path}: {kind}")
        self.path, self.kind = Path(path), kind


def read_header(path: str | Path) -> tuple[dict[str, Spec], dict[str, str]]:
    """:func:`parse_header` of a safetensors file, reading only its header."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            f.seek(0)
            prefix = f.read(8)
            if len(prefix) == 8:
                (length,) = struct.unpack("<Q", prefix)
                prefix += f.read(min(length, MAX_HEADER_BYTES, size - 8))
    except OSError as err:
        raise DamagedFile(path, f"cannot be read ({err.strerror or err})") from None
    return parse_header(path, prefix, size)


def read_weights(path: str | Path, purpose: str) -> tuple[dict[str, Spec], dict[str, str], bytes]:
    """(tensor specs, metadata, the file's bytes) of a safetensors file, read once, after
    :func:`numgen.config.check_memory` has found room for it (``purpose`` names the work in its
    message); make the tensors with :func:`tensors_of` once the specs are checked."""
    path = Path(path)
    try:
        check_memory(purpose, path.stat().st_size)
        data = path.read_bytes()
    except OSError as err:
        raise DamagedFile(path, f"cannot be read ({err.strerror or err})") from None
    return (*parse_header(path, data, len(data)), data)


def tensors_of(path: str | Path, data: bytes) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file's bytes ``data`` (read from ``path``)."""
    try:
        return safetensors.torch.load(data)
    except SafetensorError as err:
        raise DamagedFile(path, f"unreadable weights ({err})") from None


def parse_header(path: Path, data: bytes, size: int) -> tuple[dict[str, Spec], dict[str, str]]:
    """({tensor name: (dtype, shape)}, metadata) from the first bytes ``data`` of a safetensors
    file of ``size`` bytes (at least its header, if the file is whole); :class:`DamagedFile` for
    a truncated file, a broken header or byte ranges that do not add up."""
    if size < 8:
        raise DamagedFile(path, f"truncated to {size} bytes (no safetensors header)")
    (length,) = struct.unpack("<Q", data[:8])
    if length > min(MAX_HEADER_BYTES, size - 8):
        raise DamagedFile(
            path, f"truncated or damaged: its header claims {length:,} bytes in a file of "
            f"{size:,}",
        )  # fmt: skip
    raw = data[8 : 8 + length]
    try:
        header = parse_json(raw.rstrip(b" "), "header")
    except ConfigError as err:
        raise DamagedFile(path, f"damaged header ({err})") from None
    if not isinstance(header, dict):
        raise DamagedFile(path, "damaged header (not a JSON object)")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise DamagedFile(path, "damaged header (its metadata is not text)")
    specs, end = {}, 0
    for name, entry in header.items():
        spec, (start, stop) = _entry(path, name, entry)
        specs[name] = spec
        end = max(end, stop)
    data = size - 8 - length
    if end != data:
        what = "truncated" if end > data else "damaged"
        raise DamagedFile(path, f"{what}: the tensors take {end:,} bytes, the file holds {data:,}")
    return specs, metadata


def _entry(path: Path, name: str, entry: object) -> tuple[Spec, tuple[int, int]]:
    """One header entry -> ((dtype, shape), (start, stop)), checked for sense."""
    bad = DamagedFile(path, f"damaged header (entry {name[:60]!r})")
    if not isinstance(entry, dict):
        raise bad
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in DTYPE_BYTES or not isinstance(shape, list) or not isinstance(offsets, list):
        raise bad
    if not all(type(n) is int and n >= 0 for n in [*shape, *offsets]) or len(offsets) != 2:
        raise bad
    numel = 1
    for n in shape:
        numel *= n
    if offsets[1] - offsets[0] != numel * DTYPE_BYTES[dtype]:
        raise bad
    return (dtype, tuple(shape)), (offsets[0], offsets[1])


def expected_specs(model_config: object) -> tuple[dict[str, Spec], list[tuple[int, ...]]]:
    """({weight name: (dtype, shape)}, [parameter shapes in optimiser order]) of the model that
    ``model_config`` builds — built on the ``meta`` device, so nothing is allocated."""
    with torch.device("meta"):
        model: Generator = build_model(model_config)
    return specs_of(model), [tuple(p.shape) for p in model.parameters() if p.requires_grad]


def specs_of(model: torch.nn.Module) -> dict[str, Spec]:
    """{weight name: (safetensors dtype, shape)} of a module's state dict."""
    return {
        name: (TORCH_DTYPES.get(t.dtype, str(t.dtype)), tuple(t.shape))
        for name, t in model.state_dict().items()
    }


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


def mismatches(found: Mapping[str, Spec], expected: Mapping[str, Spec]) -> list[str]:
    """What differs between a file's tensors and the expected ones, the model's first layer first."""
    problems = []
    for name, (dtype, shape) in expected.items():
        if name not in found:
            problems.append(f"{name} is missing")
        elif found[name] != (dtype, shape):
            problems.append(
                f"{name} has shape {found[name][1]} ({found[name][0]}), where the config "
                f"expects {shape} ({dtype})"
            )
    problems += [f"{name} is not part of this model" for name in found if name not in expected]
    return problems


def describe(problems: list[str], most: int = 3) -> str:
    more = f" and {len(problems) - most} more" if len(problems) > most else ""
    return "; ".join(problems[:most]) + more


def read_model_weights(
    weights_path: str | Path, expected: Mapping[str, Spec], config_name: str,
    error: type[Exception] = DamagedFile,
) -> dict[str, torch.Tensor]:  # fmt: skip
    """The tensors of a model's weights file, read once and checked before they are trusted:
    the memory they need, their names, shapes and dtypes (from the header, before any tensor is
    made) against ``expected`` (:func:`specs_of` the model of the config in ``config_name``),
    then their values (:func:`check_finite`). Raises ``error`` with a one-line message naming
    the file."""
    weights_path = Path(weights_path)
    try:
        try:
            found, metadata, data = read_weights(weights_path, f"loading {weights_path}")
        except DamagedFile as err:
            raise DamagedFile(weights_path, f"unreadable weights: {err.kind}") from None
        problems = mismatches(found, expected)
        if problems:
            raise DamagedFile(
                weights_path,
                f"the weights do not fit the config in {config_name}: {describe(problems)} "
                "(weights made for another image size than 28×28, or a config changed after training?)",
            )
        tensors = tensors_of(weights_path, data)
        check_finite(weights_path, tensors, metadata)
        return tensors
    except NumgenError as err:
        raise error(str(err)) from None


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


def check_finite(
    path: str | Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None
) -> None:
    """Refuse (:class:`DamagedFile`) the weights read from ``path`` where a floating-point tensor
    holds NaN or infinity; where ``metadata`` (the file's) holds a checksum, the tensors' bytes
    must match it too."""
    crc = _metadata_crc(metadata or {})
    for name in sorted(tensors):
        tensor = tensors[name]
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise DamagedFile(
                path, f"{name} holds NaN or infinite values; the weights are damaged "
                "(or training diverged): restore the file or train the model again",
            )  # fmt: skip
        crc = _tensor_crc(name, tensor, crc)
    if metadata and "checksum" in metadata and f"{crc:08x}" != metadata["checksum"]:
        raise DamagedFile(
            path, "its bytes changed on disk (the checksum differs): restore the file or train "
            "the model again",
        )  # fmt: skip


def checksum(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> str:
    """CRC-32 of the metadata (but its "checksum") and the tensors' bytes in name order: stored
    with a checkpoint and a model, it catches bytes changed on disk that leave the file
    well-formed (a flipped exponent bit that makes a weight huge but finite)."""
    crc = _metadata_crc(metadata)
    for name in sorted(tensors):
        crc = _tensor_crc(name, tensors[name], crc)
    return f"{crc:08x}"


def _metadata_crc(metadata: Mapping[str, str]) -> int:
    text = json.dumps(sorted((k, v) for k, v in metadata.items() if k != "checksum"))
    return zlib.crc32(text.encode())


def _tensor_crc(name: str, tensor: torch.Tensor, crc: int) -> int:
    tensor = tensor.detach().cpu().contiguous()
    crc = zlib.crc32(name.encode(), crc)
    return zlib.crc32(tensor.reshape(-1).view(torch.uint8).numpy().tobytes(), crc)


def json_field(path: Path, metadata: Mapping[str, str], key: str) -> object:
    """``metadata[key]`` parsed as JSON, or a DamagedFile naming the key."""
    if key not in metadata:
        raise DamagedFile(path, f"its metadata has no {key!r}")
    try:
        return parse_json(metadata[key], key)
    except ConfigError as err:
        raise DamagedFile(path, f"damaged metadata ({err})") from None


__all__ = [
    "DamagedFile", "check_finite", "checksum", "describe", "expected_specs", "Checkpoint",
    "check_training_memory", "json_field", "mismatches", "parse_header", "read_header",
    "read_model_weights", "read_train_state", "read_weights", "specs_of", "tensors_of",
    "training_bytes",
]  # fmt: skip
