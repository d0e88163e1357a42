"""The models the web tests serve: the bundled ones when present, else tiny ones trained here."""

from __future__ import annotations

import pytest

from numgen import hub
from numgen.models import VAEConfig
from numgen.train import TrainConfig, train

KINDS = {"vae2d": "vae", "cvae": "cvae"}  # served name -> model kind


def served_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """{served name: source} for ``create_app``: the bundled vae2d and cvae (they load in well
    under a second), or else MLPs trained for one epoch on 512 embedded digits (a few seconds),
    kept in the session's temporary folder so that each test module reuses them."""
    if set(KINDS) <= set(hub.generator_names()):
        return {name: name for name in KINDS}
    root = tmp_path_factory.getbasetemp() / "web-models"
    for name, kind in KINDS.items():
        if not (root / name / hub.CONFIG_FILE).is_file():
            model_config = VAEConfig(kind=kind, arch="mlp", hidden=32)
            train_config = TrainConfig(epochs=1, dataset="embedded", limit=512)
            train(root / name, model_config, train_config, device="cpu")
    return {name: str(root / name) for name in KINDS}
