"""Dynamic batching: the model calls of concurrent requests gathered into one forward pass.

Each request handler runs in a worker thread and calls its model's ``draw(labels, styles, seeds)``
as usual, but on a :class:`BatchedModel`, which hands the call to the app's :class:`Batcher`: the
calls of concurrent requests are concatenated, model by model, into one call, run by one of the
waiting threads, and each caller gets its rows.

The same digit must come out with the same pixels whatever else is in its batch. A matrix
product's rounding depends on the number of rows it is given (the BLAS picks its blocking, and
whether to split the sum, by shape), so the batcher always runs the model on exactly ``chunk``
rows, padding the last chunk with copies of its last row: every row is then computed by the same
kernel on the same shapes, alone or among 50 requests (tests/test_web_batching.py checks it byte
for byte). Seeds are per digit (:meth:`numgen.models.Generator.draw`), so families that sample
(flow matching) batch the same way.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import torch

from numgen.models import Generator

CHUNK_ROWS = 8  # rows of every model call (see the module docstring)
MAX_ROWS = 512  # a batch stops taking calls at this many rows (one larger call runs alone)
WAIT = 0.002  # seconds a batch waits for more calls once it has one


@dataclass
class Call:
    """One ``draw`` call waiting for its batch."""

    model: Generator
    labels: torch.Tensor | None
    styles: torch.Tensor
    seeds: torch.Tensor | None
    result: Future = field(default_factory=Future)
    turn: threading.Event = field(default_factory=threading.Event)  # drawn, or ours to lead

    @property
    def rows(self) -> int:
        return len(self.styles)

    def group(self) -> tuple:
        """Calls with the same key can be concatenated into one ``draw``."""
        labels = None if self.labels is None else (self.labels.dtype, self.labels.ndim)
        return id(self.model), labels, self.seeds is None


def _cat(tensors: list[torch.Tensor | None]) -> torch.Tensor | None:
    return None if tensors[0] is None else torch.cat(tensors)


def _pad(tensor: torch.Tensor | None, rows: int) -> torch.Tensor | None:
    """``tensor`` with its last row repeated until it has ``rows`` rows."""
    if tensor is None or len(tensor) == rows:
        return tensor
    return torch.cat([tensor, tensor[-1:].expand(rows - len(tensor), *tensor.shape[1:])])


@torch.inference_mode()
def draw_in_chunks(
    model: Generator, labels: torch.Tensor | None, styles: torch.Tensor,
    seeds: torch.Tensor | None, chunk: int = CHUNK_ROWS,
) -> torch.Tensor:  # fmt: skip
    """``model.draw`` over ``len(styles)`` rows, always ``chunk`` rows at a time: ``(N, 1, 28, 28)``."""
    out = []
    for start in range(0, len(styles), chunk):
        part = slice(start, start + chunk)
        rows = len(styles[part])
        pieces = [None if t is None else _pad(t[part], chunk) for t in (labels, styles, seeds)]
        out.append(model.draw(*pieces)[:rows])
    return torch.cat(out)


class Batcher:
    """Gathers the ``draw`` calls of concurrent request threads into batches.

    No thread of its own: the first caller to find no batch in progress *leads*. It waits until
    the calls of the other requests in progress (``in_progress()``) have joined, or ``wait``
    seconds, runs the batch in its own thread, hands each caller its rows, and passes the lead
    to the first call still queued. A lone request therefore runs at once, with no thread switch.
    ``sizes`` counts the batches by rows (the bench reads them from ``/healthz``)."""

    def __init__(
        self, wait: float = WAIT, max_rows: int = MAX_ROWS, chunk: int = CHUNK_ROWS,
        in_progress: Callable[[], int] = lambda: 1,
    ) -> None:  # fmt: skip
        self.wait, self.max_rows, self.chunk, self.in_progress = wait, max_rows, chunk, in_progress
        self.sizes: Counter[int] = Counter()
        self._queue: list[Call] = []
        self._leading = False  # a caller is gathering or running a batch
        self._changed = threading.Condition()

    def draw(
        self, model: Generator, labels: torch.Tensor | None, styles: torch.Tensor,
        seeds: torch.Tensor | None = None,
    ) -> torch.Tensor:  # fmt: skip
        """``model.draw(labels, styles, seeds)``, run in the next batch; blocks until it is done."""
        call = Call(model, labels, styles, seeds)
        with self._changed:
            self._queue.append(call)
            self._changed.notify()  # a leader waiting for calls counts this one
            lead, self._leading = not self._leading, True
        if not lead:
            call.turn.wait()  # until our rows are drawn, or the lead is passed to us
        if not call.result.done():
            self._lead()
        return call.result.result()

    def _lead(self) -> None:
        """Gather a batch from the queue, run it, pass the lead on (or give it up)."""
        with self._changed:
            deadline = time.monotonic() + self.wait
            while (
                sum(c.rows for c in self._queue) < self.max_rows
                and len(self._queue) < self.in_progress()
                and self._changed.wait(max(0.0, deadline - time.monotonic()))
            ):
                pass
            calls, rows = [], 0
            while self._queue and (not calls or rows + self._queue[0].rows <= self.max_rows):
                calls.append(self._queue.pop(0))
                rows += calls[-1].rows
        try:
            groups: dict[tuple, list[Call]] = {}
            for call in calls:
                groups.setdefault(call.group(), []).append(call)
            for group in groups.values():
                self._draw(group)
        finally:
            with self._changed:
                if self._queue:
                    self._queue[0].turn.set()  # its thread leads the next batch
                else:
                    self._leading = False
            for call in calls:
                call.turn.set()

    def _draw(self, calls: list[Call]) -> None:
        """One model call for ``calls`` (same model and argument kinds); each gets its rows."""
        try:
            images = draw_in_chunks(
                calls[0].model,
                _cat([c.labels for c in calls]),
                torch.cat([c.styles for c in calls]),
                _cat([c.seeds for c in calls]),
                self.chunk,
            )
        except Exception as err:  # one bad call must not fail its neighbours
            if len(calls) == 1:
                calls[0].result.set_exception(err)  # raised again in the caller's thread
                return
            for call in calls:  # again one by one, so that only the faulty call fails
                self._draw([call])
            return
        self.sizes[len(images)] += 1
        start = 0
        for call in calls:
            call.result.set_result(images[start : start + call.rows].clone())
            start += call.rows


class BatchedModel:
    """A served model whose ``draw`` runs in the batcher; everything else is the model's own,
    so numgen's functions (``generate.draw``, ``compose.write``, ...) take it as the model."""

    def __init__(self, model: Generator, batcher: Batcher) -> None:
        self.model, self.batcher = model, batcher

    def __getattr__(self, name: str):
        return getattr(self.model, name)

    def draw(
        self, labels: torch.Tensor | None, styles: torch.Tensor, seeds: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.batcher.draw(self.model, labels, styles, seeds)
