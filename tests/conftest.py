"""Shared fixtures: real MNIST when it is beside the checkout, tiny seeded data otherwise."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from numgen.data import DATA_DIR_ENV, Digits
from numgen.models import VAEConfig, build_model

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The canonical MNIST files: $NUMGEN_DATA_DIR, else ../shared/data/mnist beside the repo."""
    path = Path(os.environ.get(DATA_DIR_ENV) or REPO.parent / "shared" / "data" / "mnist")
    if not (path / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real MNIST not found at {path}; set {DATA_DIR_ENV}")
    return path


@pytest.fixture
def tiny_digits() -> Digits:
    """64 random 'digits' with a seeded generator: enough to exercise shapes and plumbing."""
    rng = np.random.default_rng(0)
    images = (rng.random((64, 28, 28)) > 0.8).astype(np.uint8) * 255
    return Digits(images, np.arange(64) % 10, "tiny random")


@pytest.fixture(scope="session")
def inked_cvae():
    """A tiny untrained CVAE with a bias that inks the centre, so every digit has columns of ink."""
    torch.manual_seed(0)
    model = build_model(VAEConfig(kind="cvae", arch="mlp", latent_dim=4, hidden=16)).eval()
    with torch.no_grad():
        bias = torch.full((28, 28), -4.0)
        bias[6:22, 10:18] = 2.0
        model.decoder.net[-1].bias.copy_(bias.flatten())
    return model
