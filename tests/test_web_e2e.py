"""The page in a real headless Chromium (Debian's `chromium`, driven by Playwright for Python):
the latent explorer decodes where the mouse goes, the manifold shows, a number is written,
downloaded and restyled from an upload, the digit grid draws, the API docs render with no network.
Screenshots go to test-artifacts/.

CI installs the browser with .ci/install-browser.sh; without it these tests are skipped.
"""

from __future__ import annotations

import base64
import io
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from numgen.data import load_digits
from numgen.web import create_app
from web_models import live_server, served_models

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright is not installed (.ci/install-browser.sh installs it)"
)
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Headless, no sandbox (CI runs as root), and no calls home: the machine has no network.
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not Path(CHROMIUM).is_file(),
        reason=f"no Chromium at {CHROMIUM} (.ci/install-browser.sh installs Debian's chromium)",
    ),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    """The app on a free loopback port, served by uvicorn in a thread; yields its URL."""
    with live_server(create_app(served_models(tmp_path_factory))) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server) -> Iterator:
    """The page, loaded and ready (its first pictures shown); fails on any script error."""
    page = browser.new_page(viewport={"width": 1100, "height": 1400})
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(server)
    page.wait_for_selector("body[data-ready=true]", timeout=20_000)
    yield page
    page.close()
    assert not errors, f"script errors on the page: {errors}"


def screenshot(page, name: str, **options) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), **options)


def data_url_pixels(src: str) -> np.ndarray:
    assert src.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))))


def shown_point(page) -> list[str]:
    return re.findall(r"-?\d+\.\d+", page.text_content("#coords"))


def test_the_explorer_decodes_the_point_under_the_mouse(page, server) -> None:
    box = page.locator("#latent").bounding_box()
    seen = []
    for fx, fy in ((0.25, 0.25), (0.75, 0.7)):
        before = page.get_attribute("#decoded", "src")
        page.mouse.move(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
        page.wait_for_function(
            "old => document.getElementById('decoded').src !== old", arg=before, timeout=10_000
        )
        src = page.get_attribute("#decoded", "src")
        # the digit shown is the API's decoding of the coordinates shown beside it
        z = shown_point(page)
        answer = httpx.get(f"{server}/api/decode", params={"z": z, "format": "json"}).json()
        assert src == f"data:image/png;base64,{answer['png']}"
        seen.append(data_url_pixels(src))
    assert seen[0].shape == (28, 28) and not np.array_equal(seen[0], seen[1])
    screenshot(page, "web-explorer.png")

    page.check("#manifold-toggle")
    page.wait_for_selector("#latent[data-manifold=shown]", timeout=15_000)
    screenshot(page, "web-manifold.png")


def write_and_download(page, server, text: str) -> Image.Image:
    """Write ``text`` with the page's form; check that the page shows and downloads the API's
    picture for the form's values, and return it."""
    page.fill("#text", text)
    page.click("#writer-form button[type=submit]")
    page.wait_for_function(
        f"document.getElementById('download').download === 'numgen-{text}.png'"
        " && document.getElementById('number').naturalHeight === 56",
        timeout=10_000,
    )
    params = {"text": text, "style_seed": 0, "seed": 0, "height": 56, "ink": "light"}
    expected = Image.open(io.BytesIO(httpx.get(f"{server}/api/write", params=params).content))
    shown = page.evaluate(
        "(i => [i.naturalWidth, i.naturalHeight])(document.getElementById('number'))"
    )
    assert tuple(shown) == expected.size
    with page.expect_download() as download:
        page.click("#download")
    with Image.open(download.value.path()) as picture:
        assert picture.format == "PNG"
        np.testing.assert_array_equal(np.asarray(picture), np.asarray(expected))
    return expected


def test_the_writer_writes_downloads_and_copies_a_style(page, server) -> None:
    write_and_download(page, server, "31415")
    before = page.get_attribute("#number", "src")
    digit = io.BytesIO()
    Image.fromarray(255 - load_digits("embedded", "test").images[5]).save(digit, format="PNG")
    page.set_input_files(
        "#style-file", files=[{"name": "my-digit.png", "mimeType": "image/png",
                                "buffer": digit.getvalue()}],
    )  # fmt: skip
    page.wait_for_selector("#style-note:not([hidden])", timeout=10_000)
    assert page.text_content("#style-name") == "my-digit.png"
    page.wait_for_function(
        "old => document.getElementById('number').src !== old", arg=before, timeout=10_000
    )
    screenshot(page, "web-writer.png", full_page=True)

    page.fill("#text", "12a")
    page.click("#writer-form button[type=submit]")
    page.wait_for_selector("#writer-error:not([hidden])", timeout=10_000)
    assert "not a character numgen writes" in page.text_content("#writer-error")


def test_the_writer_writes_a_date(page, server) -> None:
    date = write_and_download(page, server, "02.12.2026")
    assert date.width > 2 * 100  # ten characters: over 100 pixels wide at 28 pixels tall
    assert page.is_hidden("#writer-error")
    screenshot(page, "web-writer-date.png", full_page=True)


def test_the_digit_grid_draws_n_samples(page) -> None:
    page.wait_for_function("document.getElementById('grid-image').naturalWidth > 0")
    size = page.evaluate("[document.getElementById('grid-image').naturalWidth,"
                         " document.getElementById('grid-image').naturalHeight]")  # fmt: skip
    assert size == [10 * 30 + 2, 3 * 30 + 2]  # 30 samples in rows of 10
    page.fill("#grid-n", "5")
    page.click("#grid-form button[type=submit]")
    page.wait_for_function("document.getElementById('grid-image').naturalWidth === 5 * 30 + 2")
    screenshot(page, "web-page.png", full_page=True)


def test_the_api_docs_render_without_network(browser, server) -> None:
    page = browser.new_page(viewport={"width": 1100, "height": 1400})
    page.goto(f"{server}/docs")  # the browser has no network: Swagger UI must come from the app
    page.get_by_text("/api/decode", exact=True).first.wait_for(timeout=15_000)
    screenshot(page, "web-docs.png", full_page=True)
    page.close()
