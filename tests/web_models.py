"""The models the web tests serve (the bundled ones when present, else tiny ones trained here),
and a live server for tests that need real HTTP connections."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import uvicorn

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


@contextmanager
def live_server(app, **config) -> Iterator[str]:
    """``app`` on a free loopback port, served by uvicorn (with ``config``) in a thread; yields
    its URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", **config))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
