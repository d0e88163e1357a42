"""Files under the models, knowing nothing of them: atomic writes, and safetensors weight
files read once and checked before they are trusted.

Every file is written atomically — to a temporary file in the same directory, then renamed — so
a crash mid-write leaves the previous file intact (:func:`atomic_write`, :func:`write_json`,
:func:`save_weights`).

A safetensors file begins with an 8-byte length and a JSON header naming every tensor's dtype,
shape and byte range. A file to load is read once (:func:`read_weights`, after checking that
memory holds it); its header (:func:`parse_header`) is compared with the shapes the caller
expects (:func:`mismatches`, e.g. :func:`specs_of` a model built from its config) before any
tensor is made from the bytes, and :func:`check_finite` then refuses NaN or infinite weights and
changed bytes; :func:`read_model_weights` does all of that. :func:`read_header` reads the header
alone. Errors name the file and the kind of damage.

This module imports nothing of numgen but its config helpers and errors: the registry-aware
loader (:mod:`numgen.hub`) and the training-state checks (:mod:`numgen.checkpoint_checks`) sit
above it.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path

import safetensors.torch
import torch
from safetensors import SafetensorError
from safetensors.torch import save

from numgen.config import ConfigError, check_memory, parse_json
from numgen.errors import NumgenError

MAX_HEADER_BYTES = 100 << 20  # safetensors' own cap on the header
DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2,
    "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip
TORCH_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
                torch.float64: "F64", torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8",
                torch.bool: "BOOL"}  # fmt: skip

Spec = tuple[str, tuple[int, ...]]  # (safetensors dtype, shape)


# --- writing, atomically -------------------------------------------------------------------------


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``path`` in one step."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes files private (0600); use the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | Path, data: dict) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n"))


def save_file(tensors: dict[str, torch.Tensor], path: str, metadata: dict | None = None) -> None:
    """Write ``tensors`` as a safetensors file at ``path``. Serialized in memory and written
    here, not by ``safetensors.torch.save_file``: that writes to a temporary file of its own
    (``.tmpXXXXXX``), which a kill would leave behind, and reports a full disk as a
    ``SafetensorError`` where this raises the operating system's error (one line, exit 2)."""
    Path(path).write_bytes(save(tensors, metadata=metadata))


def save_weights(
    path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict | None = None
) -> None:
    """Write tensors (moved to CPU, made contiguous) as safetensors, atomically."""
    cpu = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(cpu, str(tmp), metadata=metadata))


# --- reading weights, checked --------------------------------------------------------------------


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


def specs_of(model: torch.nn.Module) -> dict[str, Spec]:
    """{weight name: (safetensors dtype, shape)} of a module's state dict."""
    return {
        name: (TORCH_DTYPES.get(t.dtype, str(t.dtype)), tuple(t.shape))
        for name, t in model.state_dict().items()
    }


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
