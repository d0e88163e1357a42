"""The server under concurrent load: model calls batched across requests with the same bytes as
alone, a bounded queue (503 + Retry-After), a time limit, /healthz, ETags, the access log, and a
graceful stop on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from numgen import hub
from numgen.web import batching, create_app
from numgen.web.connections import TimedH11Protocol
from web_models import live_server, served_models


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, str]:
    return served_models(tmp_path_factory)


@pytest.fixture
def slow_draws(monkeypatch) -> None:
    """Every batched model call takes 0.5 s more: requests pile up."""
    real = batching.draw_in_chunks

    def slow(*args, **kwargs):
        time.sleep(0.5)
        return real(*args, **kwargs)

    monkeypatch.setattr(batching, "draw_in_chunks", slow)


# --- batching ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["vae2d", "cvae"])
def test_a_rows_pixels_do_not_depend_on_its_batch(models, name) -> None:
    model = hub.load(models[name])
    rng = np.random.default_rng(0)
    styles = torch.from_numpy(rng.normal(size=(20, model.style_dim)).astype(np.float32))
    labels = torch.from_numpy(rng.integers(0, 10, 20)) if model.conditional else None
    alone = [batching.draw_in_chunks(model, None if labels is None else labels[i : i + 1],
                                     styles[i : i + 1], None) for i in range(20)]  # fmt: skip
    together = batching.draw_in_chunks(model, labels, styles, None)
    reversed_ = batching.draw_in_chunks(
        model, None if labels is None else labels.flip(0), styles.flip(0), None
    ).flip(0)
    for i in range(20):  # bit for bit, not just close
        assert torch.equal(alone[i][0], together[i]) and torch.equal(together[i], reversed_[i])


def test_the_flow_families_run_wider_chunks_with_the_same_bytes(models) -> None:
    """A U-Net's pass has a large cost of its own, so the onestep and the flow run 32 rows a
    call (a VAE 8): a row's pixels still do not depend on its batch."""
    onestep = hub.load("onestep")
    assert batching.chunk_rows(onestep) == batching.WIDE_CHUNK_ROWS == 32
    assert batching.chunk_rows(hub.load(models["cvae"])) == batching.CHUNK_ROWS == 8
    rng = np.random.default_rng(0)
    styles = torch.from_numpy(rng.normal(size=(40, onestep.style_dim)).astype(np.float32))
    labels, seeds = torch.from_numpy(rng.integers(0, 10, 40)), torch.arange(40)
    together = batching.draw_in_chunks(onestep, labels, styles, seeds)
    for i in (0, 31, 32, 39):  # in the first chunk, the padded second one, and alone
        alone = batching.draw_in_chunks(
            onestep, labels[i : i + 1], styles[i : i + 1], seeds[i : i + 1]
        )
        assert torch.equal(alone[0], together[i])


def concurrent_requests(cvae_dim: int) -> list[str]:
    """Requests to every drawing endpoint, each unlike the others."""
    rng = np.random.default_rng(1)
    urls = [f"/api/decode?z={x:.3f}&z={y:.3f}" for x, y in rng.uniform(-2, 2, (8, 2))]
    urls += [f"/api/decode?model=cvae&digit={d}&" + "&".join(f"z={v:.2f}" for v in
             rng.normal(size=cvae_dim)) for d in (3, 7)]  # fmt: skip
    urls += [f"/api/manifold?n=3&x_min={-1 - i}&format=json" for i in range(2)]
    urls += [f"/api/digits?digit={d}&n={d + 1}&seed={d}" for d in (2, 5, 9)]
    urls += [f"/api/write?text={t}&style_seed={i}&seed={i}&height=40"
             for i, t in enumerate(["7", "42", "2026", "31415926", "000"])]  # fmt: skip
    return urls


def test_every_endpoint_gives_the_same_bytes_batched_as_alone(models) -> None:
    # a long wait: the calls surely meet; all let in, however slow the machine (this test is
    # about bytes, not admission: a busy machine's margin refused some)
    app = create_app(models, batch_wait=0.05, max_wait=math.inf)
    urls = concurrent_requests(hub.load(models["cvae"]).style_dim)
    with live_server(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        alone = {u: client.get(u) for u in urls}  # one at a time: a batch of one call each
        assert all(answer.status_code == 200 for answer in alone.values())
        biggest_alone = max(int(k) for k in client.get("/healthz").json()["batch_rows"])
        with ThreadPoolExecutor(len(urls)) as pool:
            together = list(pool.map(client.get, urls))
        health = client.get("/healthz").json()
    rows = health["batch_rows"]
    assert health["model_cpu_seconds"] > 0
    assert max(int(k) for k in rows) > biggest_alone, f"no batch met: {rows}"
    for u, answer in zip(urls, together, strict=True):
        assert answer.status_code == 200, answer.text
        assert answer.content == alone[u].content, f"{u}: other bytes in a batch"


def test_a_failing_call_fails_only_its_request(models) -> None:
    batcher = batching.Batcher(wait=0.2, in_progress=lambda: 3)
    model = hub.load(models["vae2d"])
    good = [torch.zeros(1, 2), torch.ones(1, 2)]
    bad = torch.zeros(1, 3)  # the wrong width: the model raises

    async def together() -> list:
        calls = [batcher.draw(model, None, s) for s in (good[0], bad, good[1])]
        return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(together())
    assert batcher.sizes == {1: 2}  # the batch of three failed; then each call alone
    assert results[0].shape == (1, 1, 28, 28) and results[2].shape == (1, 1, 28, 28)
    assert isinstance(results[1], RuntimeError)


def test_requests_waiting_for_the_model_hold_no_thread_each(models, slow_draws) -> None:
    # all 20 let in, however long they wait, and drawn in one batch of the slow model
    app = create_app(models, max_wait=math.inf, batch_seconds=math.inf)
    with live_server(app) as url:
        before = threading.active_count()

        async def twenty_at_once() -> tuple[list[int], int]:
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:  # no threads
                urls = [f"/api/decode?z={i / 10}&z=0" for i in range(20)]
                answers = asyncio.gather(*(client.get(u) for u in urls))
                deadline = time.monotonic() + 60
                while (await client.get("/healthz")).json()["pending"] < 20:  # all 20 are in
                    assert time.monotonic() < deadline, "the 20 requests never all arrived"
                    await asyncio.sleep(0.01)
                during = threading.active_count()
                return [a.status_code for a in await answers], during

        statuses, during = asyncio.run(twenty_at_once())
    assert statuses == [200] * 20
    assert during - before <= 2, f"{during - before} more threads for 20 waiting requests"


# --- protection ----------------------------------------------------------------------------------


def test_a_flood_gets_503s_and_the_server_stays_up(models, slow_draws) -> None:
    app = create_app(models, max_pending=3)
    with live_server(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        with ThreadPoolExecutor(12) as pool:
            flood = [pool.submit(client.get, f"/api/decode?z={i / 10}&z=0") for i in range(12)]
            time.sleep(0.2)
            health = client.get("/healthz")  # answered at once while the flood waits
            answers = [f.result() for f in flood]
        assert health.status_code == 200 and health.json()["status"] == "ok"
        refused = [a for a in answers if a.status_code == 503]
        assert 1 <= len(refused) <= 9 and all(a.headers["retry-after"] == "1" for a in refused)
        assert "busy" in refused[0].json()["detail"]
        assert sum(a.status_code == 200 for a in answers) >= 3
        assert client.get("/healthz").json()["refused"] == len(refused)
        assert client.get("/api/decode?z=0&z=0").status_code == 200  # and it still serves


def test_a_request_over_its_time_limit_gets_503(models, slow_draws) -> None:
    client = TestClient(create_app(models, timeout=0.1))
    answer = client.get("/api/decode?z=0.3&z=0")
    assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
    assert "longer than 0.1 s" in answer.json()["detail"]


# --- caching and logging -------------------------------------------------------------------------


def test_deterministic_answers_carry_an_etag_and_revalidate_with_304(models) -> None:
    client = TestClient(create_app(models))
    first = client.get("/api/decode?z=0.5&z=0.5")
    etag = first.headers["etag"]
    assert "max-age" in first.headers["cache-control"]
    again = client.get("/api/decode?z=0.5&z=0.5", headers={"if-none-match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    other = client.get("/api/decode?z=0.5&z=0.6", headers={"if-none-match": etag})
    assert other.status_code == 200 and other.headers["etag"] != etag
    assert client.get("/api/decode?z=0.5&z=0.5").content == first.content
    assert "etag" not in client.get("/api/decode?z=0.5").headers  # a 400 is not cached
    assert "etag" not in client.get("/healthz").headers


def test_other_weights_give_other_etags(models, tmp_path) -> None:
    one = TestClient(create_app({"vae2d": models["vae2d"]}))
    model = hub.load(models["vae2d"])
    with torch.no_grad():
        next(model.parameters())[0] += 1
    hub.save_pretrained(model, tmp_path / "changed")
    other = TestClient(create_app({"vae2d": str(tmp_path / "changed")}))
    url = "/api/decode?z=0&z=0"
    assert one.get(url).headers["etag"] != other.get(url).headers["etag"]


def test_every_request_is_logged_with_its_status_and_time(models, caplog) -> None:
    client = TestClient(create_app(models))
    with caplog.at_level(logging.INFO, logger="numgen.web.access"):
        client.get("/api/decode?z=0.1&z=0.2")
        client.get("/api/digits?digit=12")
    lines = [r.getMessage() for r in caplog.records if r.name == "numgen.web.access"]
    assert len(lines) == 2
    assert '"GET /api/decode?z=0.1&z=0.2" 200' in lines[0] and lines[0].endswith(" ms")
    assert '"GET /api/digits?digit=12" 422' in lines[1]


def test_serve_prints_each_access_log_line_once() -> None:
    """`numgen serve`'s logging set-up under the CLI's (a root handler): a request's line goes to
    stderr once, not also through the root logger."""
    code = (
        "import logging, logging.config\n"
        "from numgen.cli.main import main  # sets up the CLI's logging on first use\n"
        "from numgen.cli.serve import log_config\n"
        "logging.basicConfig(level=logging.WARNING, format='%(name)s: %(message)s')\n"
        "logging.config.dictConfig(log_config(access_log=True))\n"
        "logging.getLogger('numgen.web.access').info('GET /api/digits 200')\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert [line for line in run.stderr.splitlines() if "GET /api/digits" in line] == [
        line for line in run.stderr.splitlines() if line.endswith(" GET /api/digits 200")
    ] and run.stderr.count("GET /api/digits 200") == 1


# --- stopping ------------------------------------------------------------------------------------

# `numgen serve` whose decoding of the point (1.5, 0) waits until the file sys.argv[1] exists
SLOW_SERVE = """
import os, sys, time
from numgen.web import batching
real = batching.draw_in_chunks
def slow(model, labels, styles, *args):
    deadline = time.monotonic() + 300
    while float(styles[0, 0]) == 1.5 and not os.path.exists(sys.argv[1]):
        assert time.monotonic() < deadline, "never released"
        time.sleep(0.01)
    return real(model, labels, styles, *args)
batching.draw_in_chunks = slow
from numgen.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


def test_sigterm_lets_the_requests_in_flight_finish(models, tmp_path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    release = tmp_path / "release"  # the request in flight stays there until this file exists
    args = ["serve", "--port", str(port)] + [f"--model={n}={s}" for n, s in models.items()]
    server = subprocess.Popen([sys.executable, "-c", SLOW_SERVE, str(release), *args],
                              stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300  # a busy shared machine starts it slowly
        while True:
            assert server.poll() is None and time.monotonic() < deadline, "did not start"
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        answers = []
        request = threading.Thread(
            target=lambda: answers.append(httpx.get(f"{url}/api/decode?z=1.5&z=0", timeout=300))
        )
        request.start()
        deadline = time.monotonic() + 300
        while httpx.get(f"{url}/healthz").json()["pending"] < 1:  # the request is in the server
            assert time.monotonic() < deadline, "the request never arrived"
            time.sleep(0.01)
        os.kill(server.pid, signal.SIGTERM)
        while True:  # until the server stops listening: it is stopping, the request still in it
            assert time.monotonic() < deadline, "the server did not begin to stop"
            try:
                httpx.get(f"{url}/healthz")
            except httpx.TransportError:
                break
            time.sleep(0.01)
        time.sleep(1.0)  # the request stays a second into the stop (a shorter grace would cut it)
        release.touch()
        request.join(timeout=300)
        assert answers and answers[0].status_code == 200  # finished, not cut off
        assert answers[0].headers["content-type"] == "image/png"
        # uvicorn stops, then raises the signal again so that the exit status tells why
        assert server.wait(timeout=120) in (0, -signal.SIGTERM)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    log = server.stderr.read()
    assert '"GET /api/decode?z=1.5&z=0" 200' in log and "Traceback" not in log


def test_requests_that_would_wait_too_long_get_503_at_once(models, slow_draws) -> None:
    app = create_app(models, max_wait=0.3)  # the count limit (256) is never reached here
    with live_server(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        with ThreadPoolExecutor(16) as pool:
            flood = [pool.submit(client.get, f"/api/decode?z={i / 10}&z=0") for i in range(48)]
            answers = [f.result() for f in flood]
        refused = [a for a in answers if a.status_code == 503]
        assert refused and all(int(a.headers["retry-after"]) >= 1 for a in refused)
        served = [a for a in answers if a.status_code == 200]
        assert len(served) >= 3

        def median(group: list) -> float:
            return statistics.median(a.elapsed.total_seconds() for a in group)

        assert median(refused) < median(served) / 2  # turned away without waiting in line


def _slow_client(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # the headers never end
    return sock


def test_a_client_that_never_finishes_its_headers_is_cut_off(models, monkeypatch) -> None:
    monkeypatch.setattr(TimedH11Protocol, "read_timeout", 0.5)
    with live_server(create_app(models), http=TimedH11Protocol) as url:
        sock = _slow_client(url)
        time.sleep(1.5)
        assert sock.recv(100) == b""  # closed by the server
        sock.close()
        assert httpx.get(url + "/healthz").status_code == 200


def test_connections_beyond_the_limit_are_refused_at_once(models, monkeypatch) -> None:
    monkeypatch.setattr(TimedH11Protocol, "max_connections", 3)
    with live_server(create_app(models), http=TimedH11Protocol) as url:
        held = [_slow_client(url) for _ in range(3)]
        extra = _slow_client(url)
        assert extra.recv(100).startswith(b"HTTP/1.1 503")
        for sock in [*held, extra]:
            sock.close()
        time.sleep(0.2)
        assert httpx.get(url + "/healthz").status_code == 200  # free again
