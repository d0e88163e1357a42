"""Making shards: one shard is a fixed range of images, drawn, encoded and written by one worker,
then marked done by a small state file (``.numgen/shard-NNNNNN.json``: counts for the dataset
card, and the rows of the formats that list them at the end). A shard without its state file is
made again, whole, by ``resume``; so a kill at any moment loses at most the shards in progress.

Workers are this process, processes of a local pool, or Ray actors; each loads the model once
and draws on one thread, so the bytes of a shard never depend on who made it.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from numgen.compose import ComposeError, check_model
from numgen.config import read_json
from numgen.export.formats import disk_errors, write_shard_files
from numgen.export.recipe import ExportConfig, plan
from numgen.export.render import CHUNK, render_rows
from numgen.files import atomic_write
from numgen.hub import load, place
from numgen.models import build_model, config_from_dict
from numgen.processes import die_with_parent

STATE_DIR = ".numgen"
# Starting a worker process (a fresh Python importing torch) takes seconds, in which one process
# writes thousands of images: smaller exports run in the calling process, whatever ``workers``.
POOL_MIN_IMAGES = 20_000


def state_file(out_dir: Path, shard: int) -> Path:
    return out_dir / STATE_DIR / f"shard-{shard:06d}.json"


def read_state(out_dir: Path, shard: int) -> dict | None:
    """The state of a finished shard, or None if it is not finished."""
    path = state_file(out_dir, shard)
    return read_json(path) if path.is_file() else None


def drawing_model(config: ExportConfig, model=None):
    """The model that draws ``config``'s images: ``load(config.model)``, or a copy of ``model``
    rebuilt as every worker rebuilds it (:func:`rebuild`: on the CPU, in the layout of
    :func:`numgen.hub.place`), so that no image depends on who drew it and the caller's model is
    never changed. Refused unless conditional or unless it takes ``config``'s sampler options
    (each row is drawn with ``config.sampling(model)``)."""
    if model is None:
        model = check_model(load(config.model))
    else:
        model = rebuild(*model_parts(check_model(model)))
    config.sampling(model)
    return model


def shard_rows(model, config: ExportConfig, shard: int) -> Iterator[tuple[bytes, dict]]:
    """The rows (PNG bytes, metadata) of shard ``shard``, drawn ``CHUNK`` images at a time."""
    indices = config.shard_indices(shard)
    for start in range(indices.start, indices.stop, CHUNK):
        yield from render_rows(
            model, config, plan(config, range(start, min(start + CHUNK, indices.stop)))
        )


def write_shard(model, config: ExportConfig, shard: int, out_dir: Path) -> dict:
    """Draw, encode and write shard ``shard``, then its state file; returns the state."""
    rows = list(shard_rows(model, config, shard))
    listing = write_shard_files(out_dir, config, shard, rows)
    codes = np.frombuffer("".join(m["text"] for _, m in rows).encode(), np.uint8)
    counts = np.bincount(codes, minlength=128)
    digits = counts[ord("0") : ord("9") + 1]
    others = {chr(c): int(counts[c]) for c in np.flatnonzero(counts) if not 48 <= c <= 57}
    lengths: dict[str, int] = {}
    splits: dict[str, dict] = {}
    for png, meta in rows:
        lengths[str(meta["length"])] = lengths.get(str(meta["length"]), 0) + 1
        part = splits.setdefault(meta["split"], {"rows": 0, "bytes": 0})
        part["rows"] += 1
        part["bytes"] += len(png)
    state = {"shard": shard, "rows": len(rows), "digits": digits.tolist(), "others": others,
             "lengths": lengths, "splits": splits, "listing": listing}  # fmt: skip
    path = state_file(out_dir, shard)
    with disk_errors(path):
        atomic_write(path, lambda tmp: tmp.write_text(json.dumps(state)))
    return state


# --- workers -------------------------------------------------------------------------------------


def model_parts(model) -> tuple[dict, dict[str, np.ndarray]]:
    """What a worker needs to rebuild ``model``: its config dict and its weights."""
    weights = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    return model.config.to_dict(), weights


def rebuild(config: dict, weights: dict[str, np.ndarray]):
    """The model of any registered family, from :func:`model_parts`, on the CPU (eval mode, in
    the layout of :func:`numgen.hub.place`, as ``numgen.load`` gives it)."""
    model = build_model(config_from_dict(config))
    model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    return place(model, "cpu").eval()


def worker_model(config: dict, weights: dict[str, np.ndarray]):
    """A worker's model (a pool process's or a Ray actor's): :func:`rebuild`, drawing on one
    thread (the workers share the cores)."""
    torch.set_num_threads(1)
    return rebuild(config, weights)


_worker_model = None  # each worker process loads the model once


def _start_worker(parent: int, config: dict, weights: dict[str, np.ndarray]) -> None:
    global _worker_model
    die_with_parent(parent)  # a killed export takes its workers along
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _worker_model = worker_model(config, weights)


def _worker_shard(config: ExportConfig, shard: int, out_dir: Path) -> dict:
    assert _worker_model is not None, "the worker was started without a model"
    return write_shard(_worker_model, config, shard, out_dir)


@contextmanager
def one_thread() -> Iterator[None]:
    """Draw on one thread, as every worker does, so the bytes never depend on the workers."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


OnShard = Callable[[dict], None]


def run_local(model, config: ExportConfig, shards: list[int], out_dir: Path, workers: int,
              on_shard: OnShard) -> None:  # fmt: skip
    """Make ``shards`` with ``workers`` workers: this process and ``workers - 1`` pool processes.

    This process works too, taking shards from the end of the list while the pool takes them
    from the front, so the seconds a pool process needs to start (a fresh Python importing
    torch) are never idle time; shards the pool has not begun when this process runs out are
    taken back. Small exports (under ``POOL_MIN_IMAGES``) start no pool at all.
    """
    todo = deque(shards)
    if workers == 1 or len(shards) < 2 or len(shards) * config.shard_size < POOL_MIN_IMAGES:
        workers = 1
    pool = None if workers == 1 else ProcessPoolExecutor(
        workers - 1, multiprocessing.get_context("spawn"),  # fork is unsafe once torch has threads
        initializer=_start_worker, initargs=(os.getpid(), *model_parts(model)),
    )  # fmt: skip
    pending: dict[Future, int] = {}
    try:
        with one_thread():
            while todo or pending:
                for future in [f for f in pending if f.done()]:
                    del pending[future]
                    on_shard(future.result())
                while pool and todo and len(pending) < 2 * (workers - 1):  # one begun, one queued
                    shard = todo.popleft()
                    pending[pool.submit(_worker_shard, config, shard, out_dir)] = shard
                if not todo:  # take back what the pool has not begun
                    todo.extend(pending.pop(f) for f in list(pending) if f.cancel())
                if todo:
                    shard = todo.pop() if pool else todo.popleft()  # alone: in order
                    on_shard(write_shard(model, config, shard, out_dir))
                elif pending:
                    wait(pending, return_when=FIRST_COMPLETED)
    except BaseException:  # Ctrl-C or a failure: finish the shards begun, start no more
        if pool:
            pool.shutdown(cancel_futures=True)
        raise
    if pool:
        pool.shutdown()


class ShardWriter:
    """A Ray actor: loads the model once, then writes the shards it is given."""

    def __init__(self, parts: tuple[dict, dict[str, np.ndarray]]) -> None:
        self.model = worker_model(*parts)

    def write(self, config: ExportConfig, shard: int, out_dir: str) -> dict:
        return write_shard(self.model, config, shard, Path(out_dir))


RAY_CONNECT_TIMEOUT = 10.0  # seconds a Ray head may take to accept a connection


def check_answers(address: str, timeout: float = RAY_CONNECT_TIMEOUT) -> None:
    """Refuse a Ray ``address`` (``HOST:PORT`` or ``ray://HOST:PORT``) where nothing accepts a
    connection within ``timeout`` seconds: Ray itself would retry for minutes."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not (host and port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise ComposeError(f"--ray-address {address}: give HOST:PORT, ray://HOST:PORT or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as err:
        raise ComposeError(
            f"--ray-address {address}: no Ray head answered within {timeout:g} s "
            f"({err.strerror or err}); start one (ray start --head) or check the address"
        ) from None


def run_ray(model, config: ExportConfig, shards: list[int], out_dir: Path, workers: int,
            address: str | None, on_shard: OnShard) -> None:  # fmt: skip
    """Make ``shards`` on Ray: ``workers`` actors of one CPU each, on a local Ray started here
    (``address`` None) or on the cluster at ``address`` ("auto": the one this machine joined).
    On a cluster, ``out_dir`` must be a folder every node sees (a shared file system)."""
    try:
        import ray
        from ray.util import ActorPool
    except ImportError:
        raise ComposeError("--engine ray needs Ray: pip install 'numgen[ray]'") from None
    started = not ray.is_initialized()
    if started and address not in (None, "auto"):
        check_answers(address)
    if started:
        local = {"num_cpus": workers, "include_dashboard": False} if address is None else {}
        ray.init(address=address, log_to_driver=False, **local)
    try:
        parts = ray.put(model_parts(model))  # the weights travel once, through the object store
        actor = ray.remote(num_cpus=1)(ShardWriter)
        pool = ActorPool([actor.remote(parts) for _ in range(min(workers, len(shards)))])
        for state in pool.map_unordered(
            lambda a, s: a.write.remote(config, s, str(out_dir.resolve())), shards
        ):
            on_shard(state)
    finally:
        if started:
            ray.shutdown()
