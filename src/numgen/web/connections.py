"""Time and count limits on connections, below the ASGI app: uvicorn's HTTP/1.1 protocol with a
deadline to read each request and a cap on open connections.

uvicorn closes a connection idle between requests (keep-alive time-out) but never one that
opens and then sends its headers or body slowly ("slowloris"): ~1,100 of them exhausted a
1,024 open-files limit, and the server stopped answering. Here each request must arrive whole
(headers and body) within ``NUMGEN_READ_TIMEOUT`` seconds of the connection opening or of the
previous answer, and a connection beyond ``NUMGEN_MAX_CONNECTIONS`` open at once is answered 503
and closed at once, so the process keeps files for its models, logs and real clients. Each
request's scope also notes when it was read (:data:`numgen.web.guard.RECEIVED`): the guard
counts the time it then waited for the event loop as part of its wait.

The limits come from the environment (set by ``numgen serve``), so that worker processes, which
uvicorn starts afresh, read them too.
"""

from __future__ import annotations

import asyncio
import os
import resource
import time

from uvicorn.protocols.http.h11_impl import H11Protocol

from numgen.web.guard import RECEIVED

READ_TIMEOUT_ENV, MAX_CONNECTIONS_ENV = "NUMGEN_READ_TIMEOUT", "NUMGEN_MAX_CONNECTIONS"
READ_TIMEOUT = 10.0  # seconds to send a whole request (headers and body)
SPARE_FILES = 128  # files kept free for the models, logs, uploads and the listening socket
BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-length: 0\r\n"
        b"connection: close\r\n\r\n")  # fmt: skip


def default_max_connections() -> int:
    """Open connections allowed at once: the open-files limit less :data:`SPARE_FILES`."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(16, (soft if soft != resource.RLIM_INFINITY else 65536) - SPARE_FILES)


class TimedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a read deadline per request and a cap on connections."""

    read_timeout = float(os.environ.get(READ_TIMEOUT_ENV, READ_TIMEOUT))
    max_connections = int(os.environ.get(MAX_CONNECTIONS_ENV, 0)) or default_max_connections()
    refused = 0  # connections turned away, so far (one process)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._reading: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            TimedH11Protocol.refused += 1
            transport.write(BUSY)
            transport.close()
            return
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        scope = getattr(self, "scope", None)
        super().handle_events()
        if getattr(self, "scope", None) is not scope:  # a new request: when it was read
            self.scope[RECEIVED] = time.perf_counter()  # type: ignore[literal-required]
        if self.cycle is not None and not self.cycle.more_body and not self.cycle.response_complete:
            self._disarm()  # the request is in: what the app takes is the guard's to limit

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()  # the next request on this connection has the same deadline

    def _arm(self) -> None:
        self._disarm()
        self._reading = self.loop.call_later(self.read_timeout, self._read_expired)

    def _disarm(self) -> None:
        if self._reading is not None:
            self._reading.cancel()
            self._reading = None

    def _read_expired(self) -> None:
        self._reading = None
        waiting = self.cycle is None or self.cycle.response_complete or self.cycle.more_body
        if waiting and not self.transport.is_closing():  # headers or body still on their way
            self.transport.close()
