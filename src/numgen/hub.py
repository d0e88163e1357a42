"""Saving and loading models: ``config.json`` + ``model.safetensors``, never pickles.

A model directory holds

    config.json          the model's constructor arguments (+ numgen version)
    model.safetensors    the weights
    README.md            (bundled models) the model card, with YAML metadata for model hubs

Every model loads and saves through this one module: :func:`load` (``numgen.load``) and
:func:`save_pretrained` for any generator family (the models themselves never import this
module: it sits above them), ``Recognizer.from_pretrained()`` for the judge. A name or path is looked up as a local directory first, then as the
name of a model bundled in ``numgen/pretrained/<name>/``. :func:`load_pretrained` is the one
place that reads the files, each once, through :mod:`numgen.files` (atomic writes, weights
read once and checked), which knows nothing of models.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch

from numgen.allocator import keep_freed_memory
from numgen.config import read_json
from numgen.errors import ConfigError, NumgenError
from numgen.files import checksum, read_model_weights, save_weights, specs_of, write_json
from numgen.models import MODEL_KINDS, Generator, build_model, config_from_dict
from numgen.version import __version__

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
PRETRAINED_DIR = Path(__file__).parent / "pretrained"


class ModelError(NumgenError):
    """A path or name that is not a loadable model; the message says what is wrong."""


def save_pretrained(model: torch.nn.Module, directory: str | Path) -> Path:
    """Save any numgen model (one with a ``config`` dataclass that has ``to_dict``) as
    ``config.json`` + ``model.safetensors`` in ``directory``, so that ``from_pretrained`` rebuilds
    it."""
    directory = Path(directory)
    tensors = model.state_dict()  # with a checksum, verified on load, as the training state's
    save_weights(directory / WEIGHTS_FILE, tensors, {"checksum": checksum(tensors, {})})
    write_json(directory / CONFIG_FILE, {**model.config.to_dict(), "numgen_version": __version__})
    return directory


def read_config(directory: str | Path) -> dict:
    """The config dict in ``directory``'s ``config.json`` (without ``numgen_version``), once the
    directory is found to hold both model files; a :class:`ModelError` naming what is wrong."""
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    if not directory.is_dir():
        raise ModelError(f"{directory}: no such model directory")
    for path in (config_path, weights_path):
        if not path.is_file():
            raise ModelError(f"{directory}: not a model directory (missing {path.name})")
    try:
        config = read_json(config_path)  # bounded in size and depth, UTF-8, an object
    except ConfigError as err:
        raise ModelError(str(err)) from None
    config.pop("numgen_version", None)
    return config


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
    """Bundled models that generate digits (any family in ``MODEL_KINDS``; not the recognizer)."""
    return sorted(name for kind in MODEL_KINDS for name in pretrained_names(kind))


def resolve(name_or_path: str | Path) -> Path:
    """A directory, or else a bundled model's name, -> the model directory. A local directory
    comes first: ``./cvae`` is the one beside you, not the bundled ``cvae``."""
    path = Path(name_or_path)
    if path.exists():
        return path
    if str(name_or_path) in pretrained_names():
        return PRETRAINED_DIR / str(name_or_path)
    names = ", ".join(pretrained_names()) or "none bundled"
    raise ModelError(
        f"{name_or_path}: no such directory and no bundled model of that name ({names})"
    )


def place(model: torch.nn.Module, device: str | torch.device) -> torch.nn.Module:
    """Move a model to ``device`` in the memory layout its convolutions run fastest in.

    Channels-last (NHWC) lets PyTorch use oneDNN's fast convolution kernels on the CPU (about 2x
    for numgen's conv VAE) and tensor-core-friendly kernels on CUDA; an MLP is unaffected. The
    maths is unchanged. On the CPU the process's allocator is also set to keep freed memory for
    the next pass (:func:`numgen.allocator.keep_freed_memory`): drawing ~1.5× faster.
    """
    if torch.device(device).type == "cpu":
        keep_freed_memory()
    return model.to(device=device, memory_format=torch.channels_last)


Model = TypeVar("Model", bound=torch.nn.Module)


def load_pretrained(
    name_or_path: str | Path, build: Callable[[dict], Model], device: str | torch.device = "cpu"
) -> Model:
    """The model in ``name_or_path`` (a directory, else a bundled name), in eval mode on
    ``device``: ``build(config dict)`` makes it, then the weights are loaded into it. Every wrong
    input is a :class:`ModelError` naming the file and what is wrong; ``build`` raises
    ``TypeError``/``ValueError`` (or ModelError) for a config it cannot take. Each file is read
    once; the weights are checked (:func:`numgen.files.read_model_weights`) against
    the model built, before any of them is loaded into it."""
    directory = resolve(name_or_path)
    config = read_config(directory)
    try:
        model = build(config)
    except (TypeError, ValueError) as err:
        raise ModelError(f"{directory / CONFIG_FILE}: not a numgen model config ({err})") from None
    except ModelError as err:  # a config of another kind of model than was asked for
        raise ModelError(f"{directory / CONFIG_FILE}: {err}") from None
    weights = read_model_weights(directory / WEIGHTS_FILE, specs_of(model), CONFIG_FILE, ModelError)
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:  # missing or unexpected tensors
        first = str(err).splitlines()[0]
        raise ModelError(
            f"{directory / WEIGHTS_FILE}: weights do not fit the config ({first})"
        ) from None
    return model.to(device).eval()


def build_generator(config: dict) -> Generator:
    """A generator of the family named by ``config["kind"]`` (any registered in ``MODEL_KINDS``)."""
    kind = config.get("kind", "vae")
    if kind not in MODEL_KINDS:
        raise ModelError(
            f"kind {kind!r}: not a generator of digits (those are {', '.join(sorted(MODEL_KINDS))}); "
            f"give a run or model directory of one, or a bundled generator "
            f"({', '.join(generator_names()) or 'none bundled'})"
        )
    return build_model(config_from_dict(config))


def load(name_or_path: str | Path, device: str | torch.device = "cpu") -> Generator:
    """A ready generator (eval mode) of any family from a model/run directory or a bundled name:
    in the memory layout of :func:`place`."""
    return place(load_pretrained(name_or_path, build_generator, device), device)
