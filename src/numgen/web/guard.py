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
from dataclasses import dataclass

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
    By Little's law the server's rate is the requests in the app over the time each spends
    there: measured as moving averages over the last ~5 answers of how long each took and of
    how many were in the app when it came in, a new request with ``pending`` ahead of it expects
    ``pending`` over that rate. A measured rate rather than a count: the same 256 requests at
    once are a moment's work for the cvae and seconds for the flow."""

    max_pending: int  # requests to /api/ at once
    timeout: float  # seconds a request may take
    max_wait: float = 1.0  # a request that would wait longer than this gets a 503 at once
    pending: int = 0  # requests to /api/ now in the app; only the event loop writes these
    refused: int = 0  # 503s for being busy, so far
    latency: float = 0.0  # seconds the recent answers took in the app (moving average)
    crowd: float = 1.0  # requests in the app when those came in, themselves included (average)

    def expected_wait(self) -> float:
        """Seconds a request arriving now would expect to take (0 with fewer than :data:`FEW`
        requests ahead of it: no queue worth the name, and a fresh measure after a burst)."""
        if self.pending < FEW:
            return 0.0
        if self.crowd < FEW / 2:  # measured without a queue: the rate a burst gets is unknown
            return self.latency
        return self.latency * (self.pending + 1) / self.crowd

    def answered(self, seconds: float, crowd: int) -> None:
        """A request left the app after ``seconds``; ``crowd`` were in it when it came in."""
        self.latency += 0.2 * (seconds - self.latency)
        self.crowd += 0.2 * (crowd - self.crowd)


FEW = 8  # requests ahead of a new one below which it is always let in
MAX_RETRY_AFTER = 30  # seconds


class Guard:
    """At most ``load.max_pending`` requests to ``/api/`` at once, and none that would wait
    longer than ``load.max_wait`` seconds for those ahead of it: the one turned away gets a 503
    with ``Retry-After`` at once instead of waiting in a queue longer than a client can bear. A
    request running past ``load.timeout`` seconds gets a 503 too. Every request is logged with
    its status and time."""

    def __init__(self, app: ASGIApp, load: Load) -> None:
        self.app, self.load = app, load

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
            if not scope["path"].startswith("/api/"):
                await self.app(scope, receive, send_noting_status)
            elif (
                self.load.pending >= self.load.max_pending
                or self.load.expected_wait() > self.load.max_wait
            ):
                self.load.refused += 1
                detail = f"the server is busy ({self.load.pending} requests at once); retry shortly"
                wait = math.ceil(self.load.expected_wait())
                retry = min(MAX_RETRY_AFTER, max(RETRY_AFTER, wait))
                await answer(send_noting_status, 503, detail, {"retry-after": str(retry)})
            else:
                await self._limited(scope, receive, send_noting_status, status)
        finally:
            if access_log.isEnabledFor(logging.INFO):
                query = scope.get("query_string", b"").decode("latin-1")
                path = scope["path"] + (f"?{query}" if query else "")
                client = scope.get("client") or ("-", 0)
                ms = (time.perf_counter() - start) * 1000
                access_log.info(
                    '%s "%s %s" %d %.1f ms', client[0], scope["method"], path[:300], status[0], ms
                )

    async def _limited(self, scope: Scope, receive: Receive, send: Send, status: list) -> None:
        self.load.pending += 1
        started, crowd = time.perf_counter(), self.load.pending
        try:
            async with asyncio.timeout(self.load.timeout) as limit:
                await self.app(scope, receive, send)
        except TimeoutError:
            if not limit.expired() or status[0]:  # not ours, or the answer had begun: a bug
                raise
            detail = f"the request took longer than {self.load.timeout:g} s; try a smaller one"
            await answer(send, 503, detail, {"retry-after": str(RETRY_AFTER)})
        finally:
            self.load.answered(time.perf_counter() - started, crowd)
            self.load.pending -= 1


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
