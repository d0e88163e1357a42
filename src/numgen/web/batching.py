"""Dynamic batching: the model calls of concurrent requests gathered into one forward pass.

Requests run on the event loop. A request's own work (checking its input, laying out a number,
encoding the PNG) is ordinary synchronous numgen code (``generate.draw``, ``compose.write``, ...),
run in the request's task through a greenback portal (:func:`run`). When that code calls its
model's ``draw(labels, styles, seeds)`` on a :class:`BatchedModel`, the call is handed to the app's
:class:`Batcher` and the request *awaits* its rows — the event loop goes on with other requests,
no thread is held. The batcher concatenates the waiting calls, model by model, and runs them in
its one model thread, so the event loop never runs a forward pass and the model never runs two
batches at once; then each caller gets its rows and carries on where it stopped. The legibility
checker's readings (:class:`BatchedChecker`) go through the same batcher, with the models' calls.

Why not a thread per request (FastAPI's plain ``def`` handlers): 50 threads handing work to each
other through locks. In short runs of 50 clients decoding on the shared 2 cores, awaiting instead
took the server's CPU per request from 1.1 to 0.9 ms (the model's share is about 0.2 ms), and the
garbage-collection freeze in :func:`numgen.web.app.create_app` on to 0.67 ms, with the p99 from
245 to 59 ms (bench/results/serve_load.md has the full before and after).

The same digit must come out with the same pixels whatever else is in its batch. A matrix
product's rounding depends on the number of rows it is given (the BLAS picks its blocking, and
whether to split the sum, by shape), so the batcher always runs a model on exactly its ``chunk``
of rows (:func:`chunk_rows`), padding the last chunk with copies of its last row: every row is
then computed by the same kernel on the same shapes, alone or among 50 requests
(tests/test_web_batching.py checks it byte for byte). Seeds are per digit (:meth:`numgen.models.Generator.draw`), so families that sample
(flow matching) batch the same way.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TypeVar

import greenback
import numpy as np
import torch

from numgen.legibility import asked_probability
from numgen.models import FlowModel, Generator, OneStepModel
from numgen.models.sampling import Sampling, precision_context
from numgen.recognizer import Recognizer
from numgen.web.guard import request_started

# rows of every model call (see the module docstring), by model: a pass of a flow family's U-Net
# costs ~1.8 ms plus ~0.11 ms a row (the onestep), so those run 32 rows, at 0.17 ms a row where 8
# took 0.33; a VAE's or the checker's pass costs about the same per row at 8 rows as at 32, so
# a lone request's rows are padded to 8 only
CHUNK_ROWS = 8
WIDE_CHUNK_ROWS = 32
MAX_ROWS = 512  # a batch stops taking calls at this many rows (one larger call runs alone)
WAIT = 0.002  # seconds a call may wait for others to join its batch
BATCH_SECONDS = 0.1  # a batch stops taking calls at this much expected model time

T = TypeVar("T")


async def run(function: Callable[..., T], *args, **kwargs) -> T:
    """``function(*args, **kwargs)``, synchronous code, run in the calling request's task: its
    model calls on a :class:`BatchedModel` await their batch without blocking the event loop."""
    return await greenback.with_portal_run_sync(function, *args, **kwargs)


@dataclass
class Call:
    """One ``draw`` call waiting for its batch."""

    model: Generator | BatchedChecker
    labels: torch.Tensor | None
    styles: torch.Tensor
    seeds: torch.Tensor | None
    sampling: Sampling | None
    result: asyncio.Future
    arrived: float  # the event loop's time
    started: float  # when its request entered the app (time.perf_counter()): oldest first

    @property
    def rows(self) -> int:
        return len(self.styles)

    def group(self) -> tuple:
        """Calls with the same key can be concatenated into one ``draw``."""
        labels = None if self.labels is None else (self.labels.dtype, self.labels.ndim)
        return id(self.model), labels, self.seeds is None, self.sampling


def chunk_rows(model: Generator | BatchedChecker) -> int:
    """The rows of every call of ``model`` (see ``WIDE_CHUNK_ROWS``)."""
    return WIDE_CHUNK_ROWS if isinstance(model, FlowModel | OneStepModel) else CHUNK_ROWS


def _cat(tensors: list[torch.Tensor | None]) -> torch.Tensor | None:
    return None if tensors[0] is None else torch.cat(tensors)


def _pad(tensor: torch.Tensor | None, rows: int) -> torch.Tensor | None:
    """``tensor`` with its last row repeated until it has ``rows`` rows."""
    if tensor is None or len(tensor) == rows:
        return tensor
    return torch.cat([tensor, tensor[-1:].expand(rows - len(tensor), *tensor.shape[1:])])


@torch.inference_mode()
def draw_in_chunks(
    model: Generator | BatchedChecker, labels: torch.Tensor | None, styles: torch.Tensor,
    seeds: torch.Tensor | None, chunk: int | None = None, sampling: Sampling | None = None,
) -> torch.Tensor:  # fmt: skip
    """``model.draw`` over ``len(styles)`` rows with ``sampling`` (at its precision), always
    ``chunk`` rows at a time (default: the model's :func:`chunk_rows`): ``(N, 1, 28, 28)``."""
    chunk = chunk_rows(model) if chunk is None else chunk
    out = []
    precision = "fp32" if sampling is None else sampling.precision
    with precision_context(precision, model.device):
        for start in range(0, len(styles), chunk):
            part = slice(start, start + chunk)
            rows = len(styles[part])
            pieces = [None if t is None else _pad(t[part], chunk) for t in (labels, styles, seeds)]
            out.append(model.draw(*pieces, sampling)[:rows].float())
    return torch.cat(out)


class Batcher:
    """Gathers the ``draw`` calls of concurrent requests into batches, run in one model thread.

    A batch starts as soon as the model thread is free and either every request in progress
    (``in_progress()``) has its call queued, or the oldest call has waited ``wait`` seconds, or
    a full batch is queued. So a lone request runs at once, and under load (the model busy
    with the previous batch, the queue's oldest call older than ``wait``) the next batch follows
    the last without a pause. ``sizes`` counts the model calls by rows and ``model_seconds`` adds
    up the model thread's CPU time (the bench reads both from ``/healthz``).

    A batch takes the calls of the oldest requests first (``guard.request_started``), up to
    ``max_rows`` rows and ``batch_seconds`` of expected model time (each model's time per chunk
    of rows, measured). So under load requests are served about in the order they came
    in: a request's next round of drawing (the legibility check redraws a misread style) goes
    before the first round of the requests that came after it, and one batch never holds the
    model for long. Batching every queued call at once made each request's wait grow with the
    requests that came *after* it: 200 clients writing with the flow, batches of up to 510 rows
    (~0.9 s of model time), admitted writes answered in 2.3 s at the p99; the guard's admission,
    which sees only the work ahead, cannot bound that.

    One thread, not more: with a second one drawing a second batch at once, 50 clients writing
    numbers on 2 cores got slower answers (p99 270-293 ms instead of 159-171 ms) for more CPU per
    request (the model threads' Python between PyTorch's operations queues for the GIL)."""

    def __init__(
        self, wait: float = WAIT, max_rows: int = MAX_ROWS, chunk: int | None = None,
        in_progress: Callable[[], int] = lambda: 1, batch_seconds: float = BATCH_SECONDS,
    ) -> None:  # fmt: skip
        self.wait, self.max_rows, self.in_progress = wait, max_rows, in_progress
        self._chunk = chunk  # rows of every model call; None: each model's chunk_rows
        self.batch_seconds = batch_seconds
        self.sizes: Counter[int] = Counter()
        self.model_seconds = 0.0
        self.chunk_seconds: dict[int, float] = {}  # id(model) -> wall seconds per chunk (average)
        self._queue: list[Call] = []
        self._queued: Counter[Generator] = Counter()  # rows in the queue, by model
        self._runner: asyncio.Task | None = None  # gathers and runs batches while calls wait
        self._joined: asyncio.Future | None = None  # the runner waits on it for more calls
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="numgen-model")

    async def draw(
        self, model: Generator | BatchedChecker, labels: torch.Tensor | None, styles: torch.Tensor,
        seeds: torch.Tensor | None = None, sampling: Sampling | None = None,
    ) -> torch.Tensor:  # fmt: skip
        """``model.draw(labels, styles, seeds, sampling)``, run in the next batch."""
        loop = asyncio.get_running_loop()
        started = request_started.get(time.perf_counter())
        call = Call(
            model, labels, styles, seeds, sampling, loop.create_future(), loop.time(), started
        )
        self._queue.append(call)
        self._queued[model] += call.rows
        if self._joined is not None and self._ready(call.arrived):
            _resolve(self._joined)
        # The runner is the running loop's (a test client may run each request in a new loop).
        if self._runner is None or self._runner.done() or self._runner.get_loop() is not loop:
            self._runner = loop.create_task(self._run())
        return await call.result

    def chunk(self, model: Generator | BatchedChecker) -> int:
        """The rows of every call of ``model``."""
        return chunk_rows(model) if self._chunk is None else self._chunk

    def _seconds(self, model: Generator | BatchedChecker, rows: int) -> float:
        """The model time a call of ``rows`` rows of ``model`` is expected to take: its chunks
        (the last one padded) at the model's measured time per chunk (0 before any)."""
        return -(-rows // self.chunk(model)) * self.chunk_seconds.get(id(model), 0.0)

    def _ready(self, now: float) -> bool:
        """Whether the queued calls make a batch without waiting for more."""
        return (
            len(self._queue) >= self.in_progress()
            or self._queued.total() >= self.max_rows
            or sum(self._seconds(m, n) for m, n in self._queued.items()) >= self.batch_seconds
            or now >= self._queue[0].arrived + self.wait
        )

    def _take(self) -> list[Call]:
        """The next batch, out of the queue: the calls of the oldest requests that fit in
        ``max_rows`` rows and ``batch_seconds`` of model time (at least one call, and a later
        call where it fits in what is left, e.g. the padding of a chunk); cancelled calls (their
        request timed out) are dropped."""
        calls: list[Call] = []
        rows: Counter[Generator] = Counter()  # rows taken, by model
        seconds = 0.0
        for call in sorted(self._queue, key=lambda c: c.started):
            model, before = call.model, rows[call.model]
            more = self._seconds(model, before + call.rows) - self._seconds(model, before)
            fits = (
                rows.total() + call.rows <= self.max_rows and seconds + more <= self.batch_seconds
            )
            if fits or not calls:
                calls.append(call)
                rows[model] += call.rows
                seconds += more
        taken = {id(call) for call in calls}
        self._queue = [call for call in self._queue if id(call) not in taken]
        self._queued -= rows
        return [call for call in calls if not call.result.done()]

    async def _run(self) -> None:
        """Gather and run batches until no call waits."""
        loop = asyncio.get_running_loop()
        while self._queue:
            if not self._ready(loop.time()):
                self._joined = loop.create_future()
                timer = loop.call_at(self._queue[0].arrived + self.wait, _resolve, self._joined)
                try:
                    await self._joined
                finally:
                    timer.cancel()
                    self._joined = None
            calls = self._take()
            if not calls:
                continue
            drawn = await loop.run_in_executor(self._thread, self._draw_batch, calls)
            outcomes, sizes, seconds, timings = drawn
            self.sizes.update(sizes)
            self.model_seconds += seconds
            for model, chunks, wall in timings:
                known = self.chunk_seconds.setdefault(model, wall / chunks)
                self.chunk_seconds[model] = known + 0.3 * (wall / chunks - known)
            for call, outcome in zip(calls, outcomes, strict=True):
                if call.result.done():
                    continue
                if isinstance(outcome, Exception):
                    call.result.set_exception(outcome)  # raised again in the caller's request
                else:
                    call.result.set_result(outcome)

    def _draw_batch(
        self, calls: list[Call]
    ) -> tuple[list[torch.Tensor | Exception], list[int], float, list[tuple[int, int, float]]]:
        """In the model thread: each call's rows (or the error its own call raised), the rows of
        each model call run, the thread's CPU seconds, and (id(model), chunks, wall seconds)
        of each model call."""
        start = time.thread_time()
        groups: dict[tuple, list[int]] = {}
        for index, call in enumerate(calls):
            groups.setdefault(call.group(), []).append(index)
        outcomes: list = [None] * len(calls)
        sizes: list[int] = []
        timings = []
        for indices in groups.values():
            began = time.perf_counter()
            drawn = self._draw([calls[i] for i in indices], sizes)
            chunk = self.chunk(calls[indices[0]].model)
            chunks = max(1, -(-sum(calls[i].rows for i in indices) // chunk))
            timings.append((id(calls[indices[0]].model), chunks, time.perf_counter() - began))
            for index, outcome in zip(indices, drawn, strict=True):
                outcomes[index] = outcome
        return outcomes, sizes, time.thread_time() - start, timings

    def _draw(self, calls: list[Call], sizes: list[int]) -> list[torch.Tensor | Exception]:
        """One model call for ``calls`` (same model and argument kinds): each call's rows; the
        call's rows are added to ``sizes``."""
        try:
            images = draw_in_chunks(
                calls[0].model,
                _cat([c.labels for c in calls]),
                torch.cat([c.styles for c in calls]),
                _cat([c.seeds for c in calls]),
                self.chunk(calls[0].model),
                calls[0].sampling,
            )
        except Exception as err:  # one bad call must not fail its neighbours
            if len(calls) == 1:
                return [err]
            return [out for call in calls for out in self._draw([call], sizes)]  # one by one
        sizes.append(len(images))
        return [rows.clone() for rows in images.split([c.rows for c in calls])]


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


class BatchedModel:
    """A served model whose ``draw`` awaits its batch (in code run by :func:`run`), its passes
    at ``precision``; everything else is the model's own, so numgen's functions
    (``generate.draw``, ``compose.write``, ...) take it as the model."""

    def __init__(self, model: Generator, batcher: Batcher, precision: str = "fp32") -> None:
        self.model, self.batcher, self.precision = model, batcher, precision

    def __getattr__(self, name: str):
        return getattr(self.model, name)

    def draw(
        self, labels: torch.Tensor | None, styles: torch.Tensor, seeds: torch.Tensor | None = None,
        sampling: Sampling | None = None,
    ) -> torch.Tensor:  # fmt: skip
        # the precision travels with the call to the model thread, which runs the passes under
        # it: autocast entered here, in a request, would stay on in the event loop's thread for
        # every request that runs while this one awaits its batch
        sampling = replace(self.model.sampling if sampling is None else sampling,
                           precision=self.precision)  # fmt: skip
        return greenback.await_(self.batcher.draw(self.model, labels, styles, seeds, sampling))


class BatchedChecker:
    """The legibility checker of the served models (a :data:`numgen.legibility.Checker`): its
    readings run in the model thread, batched with the models' calls and each other's, so a
    request's check waits its turn as its drawing does instead of running beside the batcher."""

    def __init__(self, checker: Recognizer, batcher: Batcher, precision: str = "fp32") -> None:
        self.checker, self.batcher, self.precision = checker.eval(), batcher, precision

    @property
    def device(self) -> torch.device:
        return next(self.checker.parameters()).device

    def draw(
        self, labels: torch.Tensor, images: torch.Tensor, seeds: None = None,
        sampling: None = None,
    ) -> torch.Tensor:  # fmt: skip
        """In the model thread, as the batcher calls a model: the checker's probability of each
        asked digit ``labels`` ``(N,)`` for ``images`` ``(N, 28, 28)``, read at the served
        precision (autocast is the model thread's own, not the request's)."""
        with precision_context(self.precision, self.device):
            read = asked_probability(self.checker, images.numpy(), labels.numpy())
        return torch.from_numpy(read)

    def __call__(self, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
        read = self.batcher.draw(self, torch.as_tensor(labels), torch.as_tensor(images))
        return greenback.await_(read).numpy()
