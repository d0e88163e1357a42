"""ASGI middleware that protects the server and its clients: a bounded number of requests at
once (503 with ``Retry-After`` beyond it), a time limit per request, a body-size limit, one
access-log line per request with its time, and HTTP caching of deterministic answers.

Plain ASGI rather than Starlette's BaseHTTPMiddleware, which adds a task and a stream to every
request: these run on every request of a server meant to answer hundreds a second.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import time
from collections import Counter, deque
from contextvars import ContextVar
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger("numgen.web.access")

RETRY_AFTER = 1  # seconds a client turned away should wait before trying again


async def answer(send: Send, status: int, detail: str, headers: dict[str, str] | None = None):
    """A JSON ``{"detail": ...}`` answer, sent directly."""
    body = json.dumps({"detail": detail}).encode()
    fields = {
        "content-type": "application/json",
        "content-length": str(len(body)),
        **(headers or {}),
    }
    raw = [(k.encode(), v.encode()) for k, v in fields.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


@dataclass
class Load:
    """The guard's limits and counts (shown by /healthz), and the expected wait of a new request.

    The estimate is the work queued ahead, endpoint by endpoint: the requests in the app of
    each endpoint times the server time one of them takes, plus the new request's own. The
    server time of a request is measured as the gap between its answer and the previous one
    (or its own start, if the server was idle meanwhile): answers come out about in the order
    requests came in (the batcher serves the oldest requests first), so under load each gap is
    the time the server spent on that request alone, whatever else was in the app beside it.
    The gaps are averaged per endpoint over the last ``half_life`` seconds or so, weighted by
    how recent they are: a write of the flow costs ~10 times a decode, and the same 256
    requests at once are a moment's work for one and seconds for the other.

    That is a mean, and the bound is on each request, as its client sees it: so the estimate
    adds each endpoint's *margin*, the most that any of its last :data:`MARGIN_ANSWERS`
    answers came later than estimated (a redraw of a misread style is another batch to wait
    for; the server's pace varies with what else runs on the machine). Lateness counts from
    when the request was read off its connection, less as long again: the time it waited for
    the event loop before the app saw it is part of a client's wait, and so is the time before
    the loop read it, which the server cannot see and takes to be as long. Clients' own time
    stays out of sight: the largest lateness rather than its 99th percentile leaves room for
    it (200 clients writing on a busy 2-core machine, client-side p99 945 ms rather than
    1,037 ms). (The estimate before, mean latency over mean requests in the app, aimed the
    *mean* wait at the bound, and the answers of a crowd sharing every batch were later than
    the crowd at their start said: admitted writes waited 2.3 s at the p99 for a 1 s bound.)"""

    max_pending: int  # requests to /api/ at once
    timeout: float  # seconds a request may take
    max_wait: float = 1.0  # a request that would wait longer than this gets a 503 at once
    half_life: float = 1.0  # seconds after which a measured gap counts half
    pending: int = 0  # requests to /api/ now in the app; only the event loop writes these
    refused: int = 0  # 503s for being busy, so far
    in_app: Counter[str] = field(default_factory=Counter)  # requests in the app, by endpoint
    # endpoint -> [decayed sum of gaps (s), decayed count of answers, time of the last update]
    _gaps: dict[str, list[float]] = field(default_factory=dict)
    _last_answer: float = -math.inf  # when the last request left the app
    _late: dict[str, deque[float]] = field(default_factory=dict)  # seconds later than estimated
    _margins: dict[str, float] = field(default_factory=dict)  # the most of each

    def service(self, endpoint: str) -> float | None:
        """Seconds of server time one request to ``endpoint`` takes (None before any answer)."""
        gaps = self._gaps.get(endpoint)
        return None if gaps is None else gaps[0] / gaps[1]

    def services(self) -> dict[str, float]:
        """:meth:`service` of every endpoint measured so far."""
        return {endpoint: gaps[0] / gaps[1] for endpoint, gaps in sorted(self._gaps.items())}

    def margin(self, endpoint: str) -> float:
        """Seconds the answers to ``endpoint`` came later than estimated, at most (the recent
        ones; 0 before any)."""
        return self._margins.get(endpoint, 0.0)

    def work(self, endpoint: str) -> float:
        """Seconds of server time queued ahead of a request to ``endpoint`` arriving now, and
        its own; ``inf`` for an endpoint not yet measured."""
        own = self.service(endpoint)
        if own is None:
            return math.inf
        return own + sum(n * (self.service(e) or 0.0) for e, n in self.in_app.items())

    def expected_wait(self, endpoint: str) -> float:
        """Seconds a request to ``endpoint`` arriving now may take: :meth:`work` and
        :meth:`margin`. 0 with fewer than :data:`FEW` requests in the app (no queue worth the
        name), so that an endpoint not yet measured gets measured."""
        if self.pending < FEW:
            return 0.0
        return self.work(endpoint) + self.margin(endpoint)

    def admitted(self, endpoint: str) -> None:
        """A request to ``endpoint`` entered the app."""
        self.pending += 1
        self.in_app[endpoint] += 1

    def answered(
        self, endpoint: str, started: float, now: float, received: float | None = None,
        work: float = math.inf,
    ) -> None:  # fmt: skip
        """A request to ``endpoint`` read off its connection at ``received`` (default:
        ``started``), let into the app at ``started`` with :meth:`work` ``work`` ahead, left it
        at ``now`` (all ``time.perf_counter()`` seconds)."""
        self.pending -= 1
        self.in_app[endpoint] -= 1
        if not self.in_app[endpoint]:
            del self.in_app[endpoint]
        gap = now - max(self._last_answer, started)
        self._last_answer = now
        gaps = self._gaps.setdefault(endpoint, [0.0, 0.0, now])
        weight = 0.5 ** ((now - gaps[2]) / self.half_life)
        gaps[:] = [gaps[0] * weight + gap, gaps[1] * weight + 1, now]
        if math.isfinite(work):
            # the wait for the event loop to read the request, unseen, taken as long as the
            # wait after it was read (each is about one turn of the loop)
            read = started if received is None else received
            late = self._late.setdefault(endpoint, deque(maxlen=MARGIN_ANSWERS))
            late.append(now - (read - (started - read)) - work)
            self._margins[endpoint] = max(0.0, *late)


FEW = 8  # requests in the app below which a new one is always let in
MARGIN_ANSWERS = 200  # answers to an endpoint its margin is measured over
MAX_RETRY_AFTER = 30  # seconds


RECEIVED = "numgen.received"  # a scope's key: when the request was read (time.perf_counter())

# When the request running in this task entered the app (``time.perf_counter()``): the batcher
# serves the model calls of the oldest requests first.
request_started: ContextVar[float] = ContextVar("request_started")


class Guard:
    """At most ``load.max_pending`` requests to ``/api/`` at once, and none that would wait
    longer than ``load.max_wait`` seconds for those ahead of it: the one turned away gets a 503
    with ``Retry-After`` at once instead of waiting in a queue longer than a client can bear. A
    request running past ``load.timeout`` seconds gets a 503 too. Every request is logged with
    its status and time. ``endpoints`` are the API's paths, each measured apart; requests to
    any other path under /api/ (404s) are counted as one."""

    def __init__(self, app: ASGIApp, load: Load, endpoints: frozenset[str] = frozenset()) -> None:
        self.app, self.load, self.endpoints = app, load, endpoints

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), [0]

        async def send_noting_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            path = scope["path"]
            endpoint = path if path in self.endpoints else "other"
            if not path.startswith("/api/"):
                await self.app(scope, receive, send_noting_status)
                return
            wait = self.load.expected_wait(endpoint)
            if self.load.pending >= self.load.max_pending or wait > self.load.max_wait:
                self.load.refused += 1
                detail = f"the server is busy ({self.load.pending} requests at once); retry shortly"
                known = wait if math.isfinite(wait) else 0.0  # not measured yet: soon will be
                retry = math.ceil(min(MAX_RETRY_AFTER, max(RETRY_AFTER, known)))
                await answer(send_noting_status, 503, detail, {"retry-after": str(retry)})
            else:
                await self._limited(endpoint, scope, receive, send_noting_status, status)
        finally:
            if access_log.isEnabledFor(logging.INFO):
                query = scope.get("query_string", b"").decode("latin-1")
                path = scope["path"] + (f"?{query}" if query else "")
                client = scope.get("client") or ("-", 0)
                ms = (time.perf_counter() - start) * 1000
                access_log.info(
                    '%s "%s %s" %d %.1f ms', client[0], scope["method"], path[:300], status[0], ms
                )

    async def _limited(
        self, endpoint: str, scope: Scope, receive: Receive, send: Send, status: list
    ) -> None:
        started = time.perf_counter()
        work = self.load.work(endpoint)
        self.load.admitted(endpoint)
        request_started.set(started)
        try:
            async with asyncio.timeout(self.load.timeout) as limit:
                await self.app(scope, receive, send)
        except TimeoutError:
            if not limit.expired() or status[0]:  # not ours, or the answer had begun: a bug
                raise
            detail = f"the request took longer than {self.load.timeout:g} s; try a smaller one"
            await answer(send, 503, detail, {"retry-after": str(RETRY_AFTER)})
        finally:
            self.load.answered(endpoint, started, time.perf_counter(), scope.get(RECEIVED), work)


class LimitBody:
    """A request declaring a body over ``limit`` bytes gets a 413 before the body is read."""

    def __init__(self, app: ASGIApp, limit: int, detail: str) -> None:
        self.app, self.limit, self.detail = app, limit, detail

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            length = dict(scope["headers"]).get(b"content-length", b"0")
            if not length.isdigit() or int(length) > self.limit:
                await answer(send, 413, self.detail)
                return
        await self.app(scope, receive, send)


class HttpCache:
    """``ETag`` and ``Cache-Control`` on the successful GET answers of ``paths``, and a 304 with
    no work done when the client already holds the answer (``If-None-Match``).

    The answers are deterministic: the same query to the same models gives the same bytes. So
    the tag is a hash of the query and of ``identity`` (the served models' weights), computed
    before the request runs."""

    def __init__(self, app: ASGIApp, identity: str, paths: set[str], max_age: int = 3600) -> None:
        self.app, self.identity, self.paths = app, identity.encode(), paths
        self.cache_control = f"public, max-age={max_age}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        key = b"\0".join([self.identity, scope["path"].encode(), scope["query_string"]])
        etag = b'"' + hashlib.blake2b(key, digest_size=12).hexdigest().encode() + b'"'
        headers = [(b"etag", etag), (b"cache-control", self.cache_control)]
        asked = dict(scope["headers"]).get(b"if-none-match", b"")
        if asked == b"*" or etag in (t.strip().removeprefix(b"W/") for t in asked.split(b",")):
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return

        async def send_tagged(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 200:
                message = {**message, "headers": [*message["headers"], *headers]}
            await send(message)

        await self.app(scope, receive, send_tagged)
