"""The models the web tests serve: the bundled ones when present, else tiny ones trained here."""

from __future__ import annotations

import pytest

from numgen import hub
from numgen.models import VAEConfig
from numgen.train import TrainConfig, train

# served name -> the bundled model's shape, kept small: a 2-D VAE and a 16-D CVAE
CONFIGS = {
    "vae2d": VAEConfig(kind="vae", arch="mlp", hidden=32, latent_dim=2),
    "cvae": VAEConfig(kind="cvae", arch="mlp", hidden=32, latent_dim=16),
}


def served_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """{served name: source} for ``create_app``: the bundled vae2d and cvae (they load in well
    under a second), or else MLPs trained for one epoch on 512 embedded digits (a few seconds),
    kept in the session's temporary folder so that each test module reuses them."""
    if set(CONFIGS) <= set(hub.generator_names()):
        return {name: name for name in CONFIGS}
    root = tmp_path_factory.getbasetemp() / "web-models"
    for name, model_config in CONFIGS.items():
        if not (root / name / hub.CONFIG_FILE).is_file():
            train_config = TrainConfig(epochs=1, dataset="embedded", limit=512)
            train(root / name, model_config, train_config, device="cpu")
    return {name: str(root / name) for name in CONFIGS}
