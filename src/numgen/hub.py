"""Saving and loading models: ``config.json`` + ``model.safetensors``, never pickles.

A model directory holds

    config.json          the model's constructor arguments (+ numgen version)
    model.safetensors    the weights

and ``load`` rebuilds the model from those two files alone. Bundled models live in
``numgen/pretrained/<name>/`` and load by name: ``numgen.load("cvae")``.

Every file is written atomically — to a temporary file in the same directory, then renamed — so
a crash mid-write leaves the previous file intact.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from numgen import __version__
from numgen.errors import NumgenError
from numgen.models import Generator, build_model, config_from_dict

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
PRETRAINED_DIR = Path(__file__).parent / "pretrained"


class ModelError(NumgenError):
    """A path or name that is not a loadable model; the message says what is wrong."""


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


def save_weights(
    path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict | None = None
) -> None:
    """Write tensors (moved to CPU, made contiguous) as safetensors, atomically."""
    cpu = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(cpu, str(tmp), metadata=metadata))


def save_module(directory: str | Path, module: torch.nn.Module, config: dict) -> Path:
    """Save any module as ``config.json`` + ``model.safetensors`` in ``directory``."""
    directory = Path(directory)
    save_weights(directory / WEIGHTS_FILE, module.state_dict())
    write_json(directory / CONFIG_FILE, {**config, "numgen_version": __version__})
    return directory


def read_module(directory: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """Read ``config.json`` and ``model.safetensors`` from ``directory`` (no unpickling)."""
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    if not directory.is_dir():
        raise ModelError(f"{directory}: no such model directory")
    for path in (config_path, weights_path):
        if not path.is_file():
            raise ModelError(f"{directory}: not a model directory (missing {path.name})")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as err:
        raise ModelError(f"{config_path}: not valid JSON ({err})") from None
    if not isinstance(config, dict):
        raise ModelError(f"{config_path}: expected a JSON object")
    config.pop("numgen_version", None)
    try:
        weights = load_file(str(weights_path))
    except (SafetensorError, OSError) as err:
        raise ModelError(f"{weights_path}: unreadable weights ({err})") from None
    return config, weights


def pretrained_names(kind: str | None = None) -> list[str]:
    """Names of the models bundled with numgen (of one ``kind`` — 'vae', 'cvae', 'recognizer' —
    or all)."""
    if not PRETRAINED_DIR.is_dir():
        return []
    names = []
    for directory in sorted(PRETRAINED_DIR.iterdir()):
        config = directory / CONFIG_FILE
        if config.is_file() and kind in (None, json.loads(config.read_text()).get("kind")):
            names.append(directory.name)
    return names


def generator_names() -> list[str]:
    """Bundled models that generate digits (VAEs and CVAEs, not the recognizer)."""
    return [n for n in pretrained_names() if n not in pretrained_names("recognizer")]


def resolve(name_or_path: str | Path) -> Path:
    """A bundled model's name, or a directory, -> the model directory."""
    if str(name_or_path) in pretrained_names():
        return PRETRAINED_DIR / str(name_or_path)
    path = Path(name_or_path)
    if not path.exists():
        names = ", ".join(generator_names()) or "none bundled"
        raise ModelError(
            f"{name_or_path}: no such directory and no bundled model of that name ({names})"
        )
    return path


def place(model: torch.nn.Module, device: str | torch.device) -> torch.nn.Module:
    """Move a model to ``device`` in the memory layout its convolutions run fastest in.

    Channels-last (NHWC) lets PyTorch use oneDNN's fast convolution kernels on the CPU (about 2x
    for numgen's conv VAE) and tensor-core-friendly kernels on CUDA; an MLP is unaffected. The
    maths is unchanged.
    """
    return model.to(device=device, memory_format=torch.channels_last)


def save_pretrained(model: Generator, directory: str | Path) -> Path:
    """Save a model of any family so that :func:`load` rebuilds it."""
    return save_module(directory, model, model.config.to_dict())


def load(name_or_path: str | Path, device: str | torch.device = "cpu") -> Generator:
    """A ready model (eval mode) from a bundled name or a model/run directory."""
    directory = resolve(name_or_path)
    config_dict, weights = read_module(directory)
    try:
        config = config_from_dict(config_dict)
    except (TypeError, ValueError) as err:
        raise ModelError(f"{directory / CONFIG_FILE}: not a numgen model config ({err})") from None
    model = build_model(config)
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise ModelError(
            f"{directory / WEIGHTS_FILE}: weights do not fit the config ({first})"
        ) from None
    return place(model, device).eval()
