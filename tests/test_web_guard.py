"""The guard's admission by expected wait and the batcher's order, decided from injected times
and costs: no server, no sleeps."""

from __future__ import annotations

import asyncio
import math
import time

import httpx
import pytest
import torch

from numgen.web import batching
from numgen.web.connections import TimedH11Protocol
from numgen.web.guard import FEW, MARGIN_ANSWERS, RECEIVED, Guard, Load, request_started
from web_models import live_server

WRITE, DECODE = "/api/write", "/api/decode"


def measured(services: dict[str, float], at: float = 100.0) -> Load:
    """A load whose endpoints were each measured at ``services`` seconds a request: requests
    answered back to back, a second before ``at``."""
    load = Load(max_pending=256, timeout=10.0, max_wait=1.0)
    now = at - 1.0
    for endpoint, seconds in services.items():
        load.admitted(endpoint)
        load.answered(endpoint, started=now, now=now + seconds)
        now += seconds
    return load


def test_a_requests_server_time_is_the_gap_since_the_previous_answer() -> None:
    load = Load(max_pending=256, timeout=10.0)
    for _ in range(3):
        load.admitted(WRITE)
    for now in (10.1, 10.2, 10.3):  # all three came in at 10.0: each answer 0.1 s after the last
        load.answered(WRITE, started=10.0, now=now)
    assert load.service(WRITE) == pytest.approx(0.1)
    assert load.pending == 0 and not load.in_app
    # idle from 10.3 to 20.0: the next one's time starts when it came in, not at the last answer
    load.admitted(WRITE)
    load.answered(WRITE, started=20.0, now=20.1)
    assert load.service(WRITE) == pytest.approx(0.1)
    assert load.service(DECODE) is None


def test_old_gaps_count_less_by_their_age() -> None:
    load = measured({WRITE: 0.1}, at=100.0)  # answered at 99.1
    load.admitted(WRITE)
    load.answered(WRITE, started=99.8, now=100.1)  # 0.3 s, one half-life (1 s) later
    # (0.1 * 0.5 + 0.3) / (1 * 0.5 + 1)
    assert load.service(WRITE) == pytest.approx(0.35 / 1.5)


def test_the_expected_wait_is_the_work_ahead_by_endpoint_and_the_own() -> None:
    load = measured({WRITE: 0.1, DECODE: 0.001})
    for _ in range(FEW - 1):
        load.admitted(WRITE)
    assert load.expected_wait(WRITE) == 0.0  # fewer than FEW in the app: no queue
    load.admitted(DECODE)
    assert load.expected_wait(WRITE) == pytest.approx(7 * 0.1 + 0.001 + 0.1)
    assert load.expected_wait(DECODE) == pytest.approx(7 * 0.1 + 0.001 + 0.001)
    assert load.expected_wait("/api/digits") == math.inf  # never measured: a few at most


def test_the_margin_is_the_most_an_answer_came_later_than_estimated() -> None:
    load = measured({WRITE: 0.1})
    assert load.margin(WRITE) == 0.0
    for late in (0.05, 0.3, 0.1):  # read off the connection 0.02 s before it entered the app
        load.admitted(WRITE)
        load.answered(WRITE, started=200.0, now=200.5 + late, received=199.98, work=0.5)
    # late by the answer, and by the wait before the read, taken as long as the one after it
    assert load.margin(WRITE) == pytest.approx(0.3 + 0.02 + 0.02)
    for _ in range(FEW):
        load.admitted(WRITE)
    assert load.expected_wait(WRITE) == pytest.approx((FEW + 1) * load.service(WRITE) + 0.34)
    for _ in range(MARGIN_ANSWERS):  # the late answer is forgotten after as many on time
        load.admitted(WRITE)
        load.answered(WRITE, started=300.0, now=300.4, work=0.5)
    assert load.margin(WRITE) == 0.0


async def call(guard: Guard, path: str) -> tuple[int, dict[bytes, bytes]]:
    """One GET through ``guard``: the status and headers of its answer."""
    scope = {"type": "http", "path": path, "method": "GET", "query_string": b"", "headers": []}
    sent = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    await guard(scope, receive, send)
    return sent[0]["status"], dict(sent[0]["headers"])


async def inner(scope, receive, send) -> None:
    """The app behind the guard: 200, with when the guard let the request in as its body."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(request_started.get()).encode()})


@pytest.mark.parametrize(
    ("writes_ahead", "path", "status", "retry_after"),
    [
        (8, WRITE, 200, None),  # 8 * 0.1 + 0.1 = 0.9 s
        (8, DECODE, 200, None),  # 0.801 s
        (10, WRITE, 503, b"2"),  # 1.1 s: Retry-After is the wait, rounded up
        (10, DECODE, 503, b"2"),  # 1.001 s
        (40, WRITE, 503, b"5"),  # 4.1 s
        (3, "/api/digits", 200, None),  # never measured, but fewer than FEW in the app
        (FEW, "/api/digits", 503, b"1"),  # never measured: wait to be told soon
    ],
)
def test_the_guard_refuses_what_would_wait_past_the_bound(
    writes_ahead, path, status, retry_after
) -> None:
    load = measured({WRITE: 0.1, DECODE: 0.001})
    for _ in range(writes_ahead):
        load.admitted(WRITE)
    guard = Guard(inner, load, endpoints=frozenset({WRITE, DECODE, "/api/digits"}))
    answer, headers = asyncio.run(call(guard, path))
    assert answer == status
    assert headers.get(b"retry-after") == retry_after
    assert load.refused == (status == 503)
    assert load.pending == writes_ahead  # the request left, those ahead are still in


def test_the_guard_counts_the_wait_before_the_app_saw_the_request() -> None:
    load = measured({WRITE: 0.1})
    guard = Guard(inner, load, endpoints=frozenset({WRITE}))
    scope = {"type": "http", "path": WRITE, "method": "GET", "query_string": b"", "headers": []}

    async def send(message: dict) -> None:
        pass

    scope[RECEIVED] = time.perf_counter() - 0.25  # read a quarter second ago
    asyncio.run(guard(scope, None, send))
    assert load.margin(WRITE) >= 0.5 - 0.1  # twice that, less the 0.1 s estimated


def test_the_protocol_notes_when_it_read_each_request() -> None:
    async def echo(scope, receive, send) -> None:
        body = str(time.perf_counter() - scope[RECEIVED]).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    with live_server(echo, http=TimedH11Protocol) as url, httpx.Client(base_url=url) as client:
        for _ in range(2):  # the second on the same connection
            assert 0 <= float(client.get("/").text) < 60


def test_the_guard_counts_other_paths_under_api_as_one_endpoint() -> None:
    load = Load(max_pending=256, timeout=10.0)
    guard = Guard(inner, load, endpoints=frozenset({WRITE}))
    for path in ("/api/a", "/api/b", WRITE):
        assert asyncio.run(call(guard, path))[0] == 200
    assert set(load.services()) == {"other", WRITE}


class Blank(torch.nn.Module):
    """A model drawing blank digits, on the CPU."""

    device = torch.device("cpu")

    def draw(self, labels, styles, seeds, sampling=None):
        return torch.zeros(len(styles), 1, 28, 28)


def batches(monkeypatch, rows: dict[int, int], chunk_seconds: float | None) -> list[list[int]]:
    """Requests ``r`` (entered the app at time ``r``) each drawing ``rows[r]`` rows at once, in
    the order given, through a batcher with 2-row chunks, 0.02 s batches and the model measured
    at ``chunk_seconds`` a chunk: the requests in each batch, in the order they are drawn."""
    model, drawn = Blank(), []
    real = batching.draw_in_chunks

    def noting(model, labels, styles, seeds, chunk, sampling):
        drawn.append(list(dict.fromkeys(int(v) for v in styles[:, 0])))
        return real(model, labels, styles, seeds, chunk, sampling)

    monkeypatch.setattr(batching, "draw_in_chunks", noting)
    # all calls are queued before the first batch; the rest wait 0.01 s for company, in vain
    batcher = batching.Batcher(0.01, chunk=2, in_progress=lambda: len(rows), batch_seconds=0.02)
    if chunk_seconds is not None:
        batcher.chunk_seconds[id(model)] = chunk_seconds

    async def request(number: int, n: int) -> None:
        request_started.set(float(number))
        await batcher.draw(model, None, torch.full((n, 2), float(number)))

    async def all_at_once() -> None:
        await asyncio.gather(*(request(number, n) for number, n in rows.items()))

    asyncio.run(all_at_once())
    return drawn


def test_batches_take_the_oldest_requests_up_to_their_model_time(monkeypatch) -> None:
    # 0.01 s a 2-row chunk: a 0.02 s batch holds 4 rows
    assert batches(monkeypatch, {5: 2, 1: 2, 4: 2, 2: 2, 3: 2}, 0.01) == [[1, 2], [3, 4], [5]]


def test_a_later_request_fills_what_is_left_of_a_batch(monkeypatch) -> None:
    # request 1's 3 rows take 2 chunks, the last half empty: 2's 2 rows would make a third
    # chunk, 3's one row fits in 1's padding
    assert batches(monkeypatch, {1: 3, 2: 2, 3: 1}, 0.01) == [[1, 3], [2]]


def test_a_call_longer_than_a_batch_runs_alone(monkeypatch) -> None:
    assert batches(monkeypatch, {2: 1, 1: 6}, 0.01) == [[1], [2]]


def test_a_model_not_yet_measured_is_batched_whole(monkeypatch) -> None:
    assert batches(monkeypatch, {3: 2, 1: 2, 2: 2}, None) == [[1, 2, 3]]
