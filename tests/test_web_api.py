"""The HTTP API in-process: answers equal the Python API's, image sizes, every limit and bad input
gets a 4xx JSON answer naming the problem (the client re-raises any server error, so a 500 fails)."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from numgen import compose, generate, hub, plots
from numgen.cli.main import main
from numgen.cli.serve import model_sources
from numgen.data import load_digits
from numgen.web import app as web
from numgen.web import create_app, uploads
from web_models import served_models


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, str]:
    return served_models(tmp_path_factory)


@pytest.fixture(scope="module")
def client(models) -> TestClient:
    return TestClient(create_app(models))


@pytest.fixture(scope="module")
def vae(models):
    return hub.load(models["vae2d"])


@pytest.fixture(scope="module")
def cvae(models):
    return hub.load(models["cvae"])


def png(content: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(content))
    assert image.format == "PNG"
    return image


def pixels(content: bytes) -> np.ndarray:
    return np.asarray(png(content))


def json_pixels(answer: dict) -> np.ndarray:
    return pixels(base64.b64decode(answer["png"]))


def image_file(image: Image.Image, format: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return buffer.getvalue()


def png_file(array: np.ndarray) -> bytes:
    return image_file(Image.fromarray(array), "PNG")


# --- the page and the docs -----------------------------------------------------------------------


def test_page_static_files_and_docs_are_served(client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "Latent explorer" in page.text and "/static/app.js" in page.text
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200
    docs = client.get("/docs").text  # Swagger UI from the app itself, not from a CDN
    assets = re.findall(r"""(?:src|href)=['"](/[^'"]+)""", docs)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets) and "//cdn" not in docs
    assert all(client.get(asset).status_code == 200 for asset in assets)
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("models", "scatter", "decode", "manifold", "digits", "write", "style"):
        assert f"/api/{path}" in paths


def test_models_name_the_explorer_and_writer_defaults_and_the_limits(client) -> None:
    answer = client.get("/api/models").json()
    by_name = {m["name"]: m for m in answer["models"]}
    assert set(by_name) == {"vae2d", "cvae"}
    assert by_name["vae2d"]["latent_dim"] == 2 and not by_name["vae2d"]["conditional"]
    assert by_name["cvae"]["conditional"]
    assert (answer["explorer"], answer["writer"]) == ("vae2d", "cvae")
    assert answer["limits"]["max_digits"] == compose.MAX_DIGITS
    assert answer["limits"]["max_coordinate"] == web.MAX_COORDINATE


# --- the latent explorer -------------------------------------------------------------------------


def test_decode_gives_the_python_api_digit_as_png_or_json(client, vae) -> None:
    expected = plots.to_uint8(generate.decode(vae, [[0.5, -1.25]])[0])
    answer = client.get("/api/decode?z=0.5&z=-1.25")
    assert answer.headers["content-type"] == "image/png"
    assert png(answer.content).size == (28, 28)
    np.testing.assert_array_equal(pixels(answer.content), expected)
    body = client.get("/api/decode", params={"z": [0.5, -1.25], "format": "json"}).json()
    assert body["z"] == [0.5, -1.25] and body["model"] == "vae2d"
    np.testing.assert_array_equal(json_pixels(body), expected)


def test_decode_answers_anywhere_in_the_plane(client) -> None:
    """Every point answers a 28×28 PNG. (How fast: bench/serve_load.py, not a unit test.)"""
    rng = np.random.default_rng(0)
    for x, y in rng.uniform(-3, 3, (30, 2)):
        answer = client.get(f"/api/decode?z={x:.3f}&z={y:.3f}")
        assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
        assert pixels(answer.content).shape == (28, 28)


def test_a_conditional_model_decodes_the_asked_digit(client, cvae) -> None:
    z = [0.5] * cvae.config.latent_dim
    answer = client.get("/api/decode", params={"z": z, "digit": 3, "model": "cvae"})
    expected = plots.to_uint8(generate.decode(cvae, [z], 3)[0])
    np.testing.assert_array_equal(pixels(answer.content), expected)
    without_digit = client.get("/api/decode", params={"z": z, "model": "cvae"})
    assert without_digit.status_code == 400 and "pass 0-9" in without_digit.json()["detail"]


def test_the_explorer_needs_a_2d_latent(client, cvae) -> None:
    if cvae.config.latent_dim == 2:
        pytest.skip("the cvae served here has a 2-D latent")
    for endpoint in ("scatter", "manifold"):
        answer = client.get(f"/api/{endpoint}?model=cvae")
        assert answer.status_code == 400 and "no 2-D latent" in answer.json()["detail"]


def test_scatter_holds_the_test_digits_encodings(client, vae) -> None:
    answer = client.get("/api/scatter").json()
    test = load_digits("embedded", "test")
    assert answer["labels"] == test.labels.tolist()
    np.testing.assert_allclose(answer["points"], generate.encode(vae, test.images), atol=1e-4)
    bounds = answer["bounds"]
    assert bounds["x_min"] == pytest.approx(min(p[0] for p in answer["points"]), abs=1e-4)


def test_manifold_tiles_the_cell_centres_of_the_rectangle(client, vae) -> None:
    assert png(client.get("/api/manifold").content).size == (30 * 28, 30 * 28)
    params = {"x_min": -2, "x_max": 0, "y_min": 1, "y_max": 2, "n": 4}
    picture = pixels(client.get("/api/manifold", params=params).content)
    assert picture.shape == (4 * 28, 4 * 28)
    # the top-left cell is centred a half-cell in from the top-left corner (x_min, y_max)
    top_left = generate.decode(vae, [[-2 + 0.25, 2 - 0.125]])[0]
    np.testing.assert_array_equal(picture[:28, :28], plots.to_uint8(top_left))


# --- writing -------------------------------------------------------------------------------------


def test_digits_are_a_seeded_grid_of_ten_columns(client) -> None:
    first = client.get("/api/digits?digit=7&n=12&seed=1")
    assert png(first.content).size == (10 * 30 + 2, 2 * 30 + 2)
    assert client.get("/api/digits?digit=7&n=12&seed=1").content == first.content
    assert client.get("/api/digits?digit=7&n=12&seed=2").content != first.content
    assert png(client.get("/api/digits?digit=7&n=3").content).size == (3 * 30 + 2, 32)


def test_write_gives_the_python_api_picture(client, cvae) -> None:
    params = {"text": "2026", "style_seed": 3, "seed": 4, "height": 56, "ink": "dark"}
    expected = compose.write(cvae, "2026", style_seed=3, seed=4, height=56, ink="dark")
    answer = client.get("/api/write", params=params)
    assert png(answer.content).size == expected.size and expected.height == 56
    np.testing.assert_array_equal(pixels(answer.content), np.asarray(expected))
    body = client.get("/api/write", params={**params, "format": "json"}).json()
    assert (body["width"], body["height"]) == expected.size and body["text"] == "2026"
    np.testing.assert_array_equal(json_pixels(body), np.asarray(expected))


@pytest.mark.parametrize("text", ["02.12.2026", "-1 234,56", "+7 (812) 555-01-23", "12:30"])
def test_write_takes_dates_amounts_phones_and_times(client, cvae, text) -> None:
    expected = compose.write(cvae, text, style_seed=2, seed=1, height=56)
    answer = client.get("/api/write", params={"text": text, "style_seed": 2, "seed": 1,
                                              "height": 56})  # fmt: skip
    assert answer.status_code == 200, answer.text
    np.testing.assert_array_equal(pixels(answer.content), np.asarray(expected))


def test_an_uploaded_digit_gives_a_style_to_write_with(client, cvae) -> None:
    digit = load_digits("embedded", "test").images[0]
    answer = client.post("/api/style", files={"image": ("digit.png", png_file(digit), "image/png")})
    assert answer.status_code == 200, answer.text
    style = answer.json()["style"]
    assert len(style) == cvae.config.latent_dim
    np.testing.assert_allclose(style, compose.style_from_image(cvae, digit), atol=1e-6)
    written = client.get("/api/write", params={"text": "42", "style": style})
    expected = compose.write(cvae, "42", style=np.asarray(style, np.float32))
    np.testing.assert_array_equal(pixels(written.content), np.asarray(expected))


# --- bad requests: a 4xx JSON answer naming the problem, never a 500 -----------------------------

TOO_MANY_DIGITS = "1" * (compose.MAX_DIGITS + 1)


@pytest.mark.parametrize(
    ("url", "status", "names"),
    [
        ("/api/decode", 422, "z"),
        ("/api/decode?z=abc&z=1", 422, "z"),
        ("/api/decode?z=nan&z=0", 422, "finite"),
        ("/api/decode?z=inf&z=0", 422, "finite"),
        ("/api/decode?z=-Infinity&z=0", 422, "finite"),
        ("/api/decode?z=1e9&z=0", 422, "less than or equal to 10"),
        ("/api/decode?z=1", 400, "takes 2 values"),
        ("/api/decode?z=1&z=2&z=3", 400, "takes 2 values"),
        ("/api/decode?z=1&z=2&model=nope", 404, "unknown 'nope'"),
        ("/api/decode?z=1&z=2&digit=3", 400, "not conditional"),
        ("/api/decode?z=1&z=2&digit=10", 422, "digit"),
        ("/api/decode?z=1&z=2&format=gif", 422, "format"),
        ("/api/scatter?model=nope", 404, "unknown"),
        ("/api/manifold?n=1000", 422, "n"),
        ("/api/manifold?n=1", 422, "n"),
        ("/api/manifold?x_min=1&x_max=0", 400, "minimum must be below"),
        ("/api/manifold?y_max=nan", 422, "finite"),
        ("/api/digits", 422, "digit"),
        ("/api/digits?digit=x", 422, "digit"),
        ("/api/digits?digit=-1", 422, "digit"),
        ("/api/digits?digit=3&n=0", 422, "n"),
        ("/api/digits?digit=3&n=101", 422, "n"),
        ("/api/digits?digit=3&n=99999999999999999999", 422, "n"),
        ("/api/digits?digit=3&seed=-1", 422, "seed"),
        ("/api/digits?digit=3&seed=1.5", 422, "seed"),
        ("/api/digits?digit=3&model=vae2d", 400, "not conditional"),
        ("/api/write", 422, "text"),
        ("/api/write?text=", 422, "empty"),
        ("/api/write?text=12a", 422, "'a' at position 3 is not a character numgen writes (digits"),
        ("/api/write?text=-", 422, "holds no digit"),
        (f"/api/write?text={TOO_MANY_DIGITS}", 422, "text"),
        ("/api/write?text=1&height=5000", 422, "height"),
        ("/api/write?text=1&ink=blue", 422, "ink"),
        ("/api/write?text=1&style=nan&style=0", 422, "finite"),
        ("/api/write?text=1&style=1&style=2&style=3", 400, "a style for this model is a vector"),
        ("/api/write?text=1&style_seed=abc", 422, "style_seed"),
        ("/api/write?text=1&model=vae2d", 400, "not conditional"),
    ],
)
def test_bad_queries_get_a_4xx_naming_the_problem(client, url, status, names) -> None:
    answer = client.get(url)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert names in answer.text


def test_oversized_or_missing_uploads_are_refused(client) -> None:
    big = b"\0" * (uploads.MAX_UPLOAD_BYTES + 1)
    answer = client.post("/api/style", files={"image": ("big.png", big, "image/png")})
    assert answer.status_code == 413 and "larger than 4 MiB" in answer.json()["detail"]
    assert client.post("/api/style").status_code == 422
    assert client.post("/api/style", json={"image": "x"}).status_code == 422


def test_the_upload_size_is_checked_on_the_file_itself(client, monkeypatch) -> None:
    # A body sent without Content-Length passes the early check; the handler counts the bytes.
    monkeypatch.setattr(uploads, "MAX_UPLOAD_BYTES", 100)
    answer = client.post("/api/style", files={"image": ("a.png", b"x" * 101, "image/png")})
    assert answer.status_code == 413 and "larger than" in answer.json()["detail"]


# --- building the app and the command ------------------------------------------------------------


@pytest.mark.skipif(
    not {"vae2d", "cvae"} <= set(hub.generator_names()), reason="the bundled models are absent"
)
def test_the_default_app_serves_the_bundled_generators() -> None:
    answer = TestClient(create_app()).get("/api/models").json()
    assert [m["name"] for m in answer["models"]] == hub.generator_names()  # not the recognizer
    assert (answer["explorer"], answer["writer"]) == (
        "vae2d",
        compose.DEFAULT_WRITER,
    )  # the default writer


def test_create_app_refuses_missing_models(tmp_path) -> None:
    with pytest.raises(hub.ModelError, match="no models to serve"):
        create_app({})
    with pytest.raises(hub.ModelError, match="no such directory"):
        create_app({"x": str(tmp_path / "absent")})


def test_serve_starts_uvicorn_on_loopback_and_prints_the_url(models, monkeypatch, capsys) -> None:
    started = {}
    monkeypatch.setattr("uvicorn.run", lambda app, **kwargs: started.update(app=app, **kwargs))
    args = ["serve", "--port", "8123"] + [f"--model={n}={s}" for n, s in models.items()]
    assert main(args) == 0
    assert started["host"] == "127.0.0.1" and started["port"] == 8123
    assert "http://127.0.0.1:8123" in capsys.readouterr().out
    assert model_sources(["runs/vae", "b=x=y"]) == {"vae": "runs/vae", "b": "x=y"}
    assert main(["serve", "--model", "a=x", "--model", "a=y"]) == 2
