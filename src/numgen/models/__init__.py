"""The model families behind one interface (:class:`Generator`), registered by their config's
``kind``: VAE and conditional VAE (``vae.py``), flow matching (``flow.py``), one-step distilled flows (``onestep.py``). A new family is a new module here and a line in ``MODEL_KINDS``."""

from __future__ import annotations

from numgen.errors import ConfigError
from numgen.models.base import Generator
from numgen.models.flow import FlowConfig, FlowModel
from numgen.models.onestep import OneStepConfig, OneStepModel
from numgen.models.vae import CVAE, VAE, VAEConfig, vae_loss

# config "kind" -> the class that builds it; each class names its config dataclass
MODEL_KINDS: dict[str, type[Generator]] = {
    "vae": VAE, "cvae": CVAE, "flow": FlowModel, "onestep": OneStepModel,
}  # fmt: skip


def config_from_dict(values: dict) -> object:
    """The config dataclass of the family named by ``values["kind"]`` (default "vae")."""
    if not isinstance(values, dict):
        raise ConfigError(f"expected a JSON object of config fields, got {type(values).__name__}")
    kind = values.get("kind", "vae")
    if not isinstance(kind, str) or kind not in MODEL_KINDS:
        raise ConfigError(f"kind={kind!r}: choose one of {sorted(MODEL_KINDS)}")
    return MODEL_KINDS[kind].config_class.from_dict(values)


def build_model(config) -> Generator:
    """The model of the family registered for ``config.kind``, built from the config."""
    return MODEL_KINDS[config.kind](config)


__all__ = [
    "CVAE", "MODEL_KINDS", "VAE", "FlowConfig", "FlowModel", "Generator", "OneStepConfig", "OneStepModel", "VAEConfig", "build_model", "config_from_dict",
    "vae_loss",
]  # fmt: skip
