"""The web app serving a flow model through the generator interface: it writes and draws, copies a
style from an upload, refuses to decode a latent it does not have, and answers a write the same
alone as among concurrent requests."""

from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from numgen import compose, legibility
from numgen.errors import ConfigError
from numgen.hub import load, save_pretrained
from numgen.models import FlowConfig, FlowModel, VAEConfig, build_model
from numgen.recognizer import Recognizer, RecognizerConfig
from numgen.web import create_app


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> TestClient:
    base = build_model(VAEConfig(kind="cvae", arch="mlp", hidden=16, latent_dim=4))
    flow = build_model(FlowConfig(base=base.config.to_dict(), channels=4, steps=2))
    flow.adopt(base)
    directory = save_pretrained(flow, tmp_path_factory.mktemp("flow") / "flow")
    with TestClient(create_app({"flow": str(directory)})) as client:
        yield client


def checked_flow(tmp_path) -> tuple:
    """A tiny flow that checks its digits (threshold 0.5), saved under ``tmp_path``, and a tiny
    checker to check them: (its directory, the checker)."""
    base = build_model(VAEConfig(kind="cvae", arch="mlp", hidden=16, latent_dim=4))
    flow = build_model(FlowConfig(base=base.config.to_dict(), channels=4, steps=2, check=0.5))
    flow.adopt(base)
    directory = save_pretrained(flow, tmp_path / "flow")
    torch.manual_seed(0)
    return directory, Recognizer(RecognizerConfig(channels=2, features=8)).eval()


def png(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.content)))


def test_the_flow_is_the_writer_and_draws(client) -> None:
    models = client.get("/api/models").json()
    assert models["writer"] == "flow"
    assert png(client.get("/api/write", params={"text": "2026", "style_seed": 3})).shape[0] == 28
    grid = png(client.get("/api/digits", params={"digit": 7, "n": 4}))
    assert grid.shape[0] >= 28 and grid.shape[1] >= 4 * 28  # four digits in a row (padded)


def test_a_style_is_copied_from_an_upload(client) -> None:
    picture = np.zeros((40, 30), np.uint8)
    picture[6:34, 12:18] = 255
    data = io.BytesIO()
    Image.fromarray(picture).save(data, "PNG")
    answer = client.post("/api/style", files={"image": ("one.png", data.getvalue(), "image/png")})
    assert answer.status_code == 200, answer.text
    style = answer.json()["style"]
    assert len(style) == 4 and all(np.isfinite(style))
    written = client.get("/api/write", params=[("text", "11"), *[("style", v) for v in style]])
    png(written)


def test_decoding_a_latent_point_is_refused_for_a_flow(client) -> None:
    answer = client.get("/api/decode", params={"z": [0.0, 0.0, 0.0, 0.0], "model": "flow"})
    assert answer.status_code == 400
    assert "no latent space" in answer.json()["detail"]


def test_a_write_is_the_same_alone_and_among_concurrent_ones(client) -> None:
    def write(seed: int) -> bytes:
        return client.get("/api/write", params={"text": "409", "style_seed": seed}).content

    alone = [write(seed) for seed in range(6)]
    with ThreadPoolExecutor(6) as pool:
        together = list(pool.map(write, range(6)))
    assert together == alone


def test_the_legibility_check_is_passed_in_and_read_in_the_model_thread(
    tmp_path, monkeypatch
) -> None:
    """A model that checks its digits is checked by the checker the app was given (never the
    bundled one, loaded beside it), read in the batcher's model thread with the models' calls,
    and the answer is the one drawn with that checker outside the server."""
    directory, checker = checked_flow(tmp_path)
    threads = []
    checker.register_forward_hook(lambda *_: threads.append(threading.current_thread().name))
    monkeypatch.setattr(legibility, "bundled_checker", lambda device: pytest.fail("bundled"))
    with TestClient(create_app({"flow": str(directory)}, checker=checker)) as client:
        threads.clear()  # the warm-up's reading, before any request
        answer = png(client.get("/api/write", params={"text": "2026", "style_seed": 3}))
    assert threads and all(name.startswith("numgen-model") for name in threads)
    expected = compose.write(
        load(directory), "2026", style_seed=3, checker=legibility.reader(checker)
    )
    assert np.array_equal(answer, np.asarray(expected))


def test_served_at_bf16_every_pass_runs_in_bfloat16_and_the_etag_says_so(
    tmp_path, monkeypatch
) -> None:
    """``create_app(precision="bf16")`` (``numgen serve --precision bf16``): the model's passes
    and the check's readings, all in the batcher's model thread, run under bfloat16 autocast,
    and nothing else does (concurrent writes all answer); answers carry another ETag than at
    fp32; an unknown precision is refused before loading."""
    directory, checker = checked_flow(tmp_path)
    passes: list[tuple[str, bool]] = []

    def seen(module, *_) -> None:
        passes.append((type(module).__name__, torch.is_autocast_enabled("cpu")))

    checker.register_forward_hook(seen)
    draw = FlowModel.draw

    def drawing(self, *args, **kwargs):
        passes.append(("flow", torch.is_autocast_enabled("cpu")))
        return draw(self, *args, **kwargs)

    monkeypatch.setattr(FlowModel, "draw", drawing)
    etags = {}
    for precision in ("fp32", "bf16"):
        app = create_app({"flow": str(directory)}, checker=checker, precision=precision)
        with TestClient(app) as client:
            passes.clear()  # the warm-up's, before any request
            answer = client.get("/api/write", params={"text": "2026", "style_seed": 3})
            assert answer.status_code == 200, answer.text
            etags[precision] = answer.headers["etag"]
            # requests that run while another awaits its batch stay in float32 outside it
            with ThreadPoolExecutor(8) as pool:
                texts = [str(1000 + 7 * i) for i in range(16)]
                answers = list(
                    pool.map(lambda t: client.get("/api/write", params={"text": t}), texts)
                )
            assert [a.status_code for a in answers] == [200] * 16
        assert {name for name, _ in passes} == {"flow", "Recognizer"}
        assert all(bf16 == (precision == "bf16") for _, bf16 in passes)
    assert etags["fp32"] != etags["bf16"]
    with pytest.raises(ConfigError, match="precision='fp16': choose one of fp32, bf16"):
        create_app({"flow": str(directory)}, checker=checker, precision="fp16")
