"""A bounded load test of `numgen serve` on loopback: decode and write under many clients.

    flock /tmp/numgen-cpu.lock .venv/bin/python bench/serve_load.py [--clients 50] [--seconds 20]
        [--model NAME=DIR ...] [--write-model NAME ...] [--baseline GIT_REF] [--serve-option=...]

Starts `numgen serve` on a free loopback port (the bundled models, or the --model ones) and
waits until it answers. With ``--baseline REF`` it first does the same with numgen's source at
that git commit (``git archive``, run with this environment's packages), so that the previous
version and this one are measured in one session on the same, shared, machine. Then, one endpoint at a time, runs asyncio clients, each sending
requests back to back on its own kept-alive connection until the time is up, every request a
fresh random one:

- ``decode``, 1 client: the latency of one latent point when the server is idle;
- ``decode``, C clients: the page's request (``format=json``) for random points in [-3, 3]²;
- ``write``, C clients: numbers of 1-8 digits, random style seed and seed, 56 px high, as PNG,
  by the default writer, and again by each ``--write-model`` (e.g. the fast cvae).

Reports requests/s, p50/p99/max latency, the server's CPU time per request and the share of the
cores it got (figures that depend less on other work on a shared machine), errors (any answer but 200, or a failed connection)
and, from ``/healthz``, the rows per model call the batcher reached and the model thread's CPU
time per request (the part of the server's time batching cannot shrink), to stdout and
bench/results/serve_load.{md,json}. Targets (issue 12): 50 clients, decode p99 < 50 ms, write
p99 < 100 ms, no errors. The clients share the machine's
cores with the server, so the figures are a floor for what the server alone could do. The
server is stopped at the end whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from common import command, load_average, machine, machine_line, write_results

NUMGEN = Path(sys.executable).with_name("numgen")  # the console script beside this interpreter


def decode_url(rng: random.Random) -> str:
    x, y = rng.uniform(-3, 3), rng.uniform(-3, 3)
    return f"/api/decode?z={x:.3f}&z={y:.3f}&format=json"


def write_url(rng: random.Random) -> str:
    text = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 8)))
    seeds = f"style_seed={rng.randrange(10**6)}&seed={rng.randrange(10**6)}"
    return f"/api/write?text={text}&{seeds}&height=56"


def writing_with(model: str) -> Callable[[random.Random], str]:
    """``write_url``'s requests, asking the server for one of its other models by name."""
    return lambda rng: f"{write_url(rng)}&model={model}"


async def get(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str
) -> tuple[int, float]:
    """One HTTP/1.1 GET on a kept-alive connection, reading the whole answer: its status and
    its Retry-After (0 without one)."""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    fields = dict(line.lower().split(":", 1) for line in head[1:] if line)
    await reader.readexactly(int(fields["content-length"]))
    return int(head[0].split()[1]), float(fields.get("retry-after", 0))


async def load(
    port: int, url_for: Callable[[random.Random], str], clients: int, seconds: float
) -> dict:
    """``clients`` clients, each on its own kept-alive connection, sending requests back to back
    for ``seconds``; the figures. The clients speak HTTP/1.1 over asyncio streams directly: httpx
    spent 6-12 ms of CPU per request here with 50 connections, more than the server, and the two
    share the cores."""
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    refused: list[float] = []  # the time each 503 took

    async def client(index: int, deadline: float) -> None:
        rng = random.Random(index)
        connection = None
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            try:
                connection = connection or await asyncio.open_connection("127.0.0.1", port)
                status, retry = await asyncio.wait_for(get(*connection, url_for(rng)), timeout=60)
            except (OSError, EOFError, TimeoutError, ValueError, KeyError) as err:
                errors[type(err).__name__] += 1
                if connection:
                    connection[1].close()
                connection = None
                continue
            if status == 200:
                latencies.append(time.perf_counter() - start)
            elif status == 503:  # turned away: a polite client waits as it is told
                refused.append(time.perf_counter() - start)
                await asyncio.sleep(min(retry, max(0.0, deadline - time.perf_counter())))
            else:
                errors[f"HTTP {status}"] += 1
        if connection:
            connection[1].close()

    start = time.perf_counter()
    await asyncio.gather(*(client(i, start + seconds) for i in range(clients)))
    elapsed = time.perf_counter() - start
    ms = sorted(t * 1000 for t in latencies)
    return {
        "clients": clients,
        "seconds": round(elapsed, 2),
        "requests": len(ms),
        "requests_per_s": round(len(ms) / elapsed, 1),
        "p50_ms": round(statistics.median(ms), 1) if ms else None,
        "p99_ms": round(ms[min(len(ms) - 1, int(0.99 * len(ms)))], 1) if ms else None,
        "max_ms": round(ms[-1], 1) if ms else None,
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "refused_503": len(refused),
        "refused_share": round(len(refused) / max(1, len(refused) + len(ms)), 3),
        "p99_503_ms": round(sorted(refused)[int(0.99 * (len(refused) - 1))] * 1000, 1)
        if refused
        else None,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(server: subprocess.Popen, port: int, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"numgen serve exited with code {server.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/models", timeout=2):
                return
        except OSError:  # not listening yet
            time.sleep(0.5)
    raise SystemExit(f"numgen serve did not answer within {timeout:.0f} s")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by process ``pid`` and its children (the workers)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        if stat.parent.name == str(pid) or fields[1] == str(pid):  # fields[1]: parent's pid
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def health(port: int) -> dict | None:
    """The server's ``/healthz``: model calls by rows, model thread's CPU seconds; None where it
    has none."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
            return json.load(answer)
    except OSError:  # the baseline has no /healthz
        return None


def model_summary(before: dict | None, after: dict | None, requests: int) -> dict:
    """Rows per model call during one phase (calls, mean and largest), and the model thread's
    CPU time per request where the server reports it."""
    if before is None or after is None:
        return {}
    calls = Counter({int(k): v for k, v in after["batch_rows"].items()})
    calls -= Counter({int(k): v for k, v in before["batch_rows"].items()})
    total = sum(calls.values())
    if not total:
        return {}
    mean = sum(rows * n for rows, n in calls.items()) / total
    summary = {"model_calls": total, "mean_rows": round(mean, 1), "max_rows": max(calls)}
    if "model_cpu_seconds" in after:
        seconds = after["model_cpu_seconds"] - before["model_cpu_seconds"]
        summary["model_cpu_ms_per_request"] = round(1000 * seconds / max(1, requests), 2)
    return summary


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` and its children (the workers), in MB."""
    total = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines())
        except (OSError, ValueError):  # the process ended meanwhile
            continue
        if str(pid) in (status.parent.name, fields["PPid"].strip()):
            total += int(fields.get("VmRSS", "0 kB").split()[0])
    return round(total / 1024, 1)


def upload_image() -> bytes:
    """A ~3.8 MiB PNG (random grey noise does not compress) with a bright square in it."""
    import io

    import numpy as np
    from PIL import Image

    noise = np.random.default_rng(0).integers(0, 256, (2000, 2000), dtype=np.uint8)
    noise[700:1300, 700:1300] = 255
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


async def upload(port: int, data: bytes) -> int:
    """POST ``data`` to /api/style as a multipart form on a new connection: the status."""
    boundary = "numgen-bench-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="x.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            f"POST /api/style HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n".encode()
            + body
        )
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        return int(head.split()[1])
    finally:
        writer.close()


def upload_memory(server: subprocess.Popen, port: int, count: int) -> dict:
    """The server's memory before and after ``count`` concurrent ~4 MiB uploads."""
    data = upload_image()

    async def all_at_once() -> list[int]:
        return await asyncio.gather(*(upload(port, data) for _ in range(count)))

    asyncio.run(upload(port, data))  # the first upload loads the recognizer
    time.sleep(1)
    before = rss_mb(server.pid)
    start = time.perf_counter()
    statuses = Counter(asyncio.run(all_at_once()))
    seconds = time.perf_counter() - start
    after = rss_mb(server.pid)
    time.sleep(2)
    return {
        "uploads": count, "upload_mib": round(len(data) / 2**20, 2), "seconds": round(seconds, 1),
        "statuses": dict(statuses), "rss_before_mb": before, "rss_after_mb": after,
        "rss_2s_later_mb": rss_mb(server.pid),
    }  # fmt: skip


def measure(name: str, command: list[str], env: dict, args: argparse.Namespace) -> list[dict]:
    """Start the server ``command``, run the plan against it, stop it: one dict per phase."""
    port = free_port()
    command = [*command, "serve", "--port", str(port), *args.serve_option]
    command += [f"--model={model}" for model in args.model]
    server = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    runs = []
    try:
        wait_until_up(server, port)
        plan = [("decode", decode_url, 1, min(args.seconds, 5.0))]
        for clients in args.clients:
            plan += [("decode", decode_url, clients, args.seconds),
                     ("write", write_url, clients, args.seconds)]  # fmt: skip
            plan += [(f"write, {writer} writer", writing_with(writer), clients, args.seconds)
                     for writer in args.write_model]  # fmt: skip
        for endpoint, url_for, clients, seconds in plan:
            before, cpu_before = health(port), cpu_seconds(server.pid)
            run = {"server": name, "endpoint": endpoint}
            run.update(asyncio.run(load(port, url_for, clients, seconds)))
            cpu = cpu_seconds(server.pid) - cpu_before
            run["server_cpu_ms_per_request"] = round(1000 * cpu / max(1, run["requests"]), 2)
            run["server_cpu_share"] = round(cpu / run["seconds"], 2)  # cores the server got
            run.update(model_summary(before, health(port), run["requests"]))
            print(json.dumps(run))
            runs.append(run)
        if args.uploads:
            memory = {"server": name, **upload_memory(server, port, args.uploads)}
            print(json.dumps(memory))
            runs.append(memory)
    finally:
        server.terminate()
        server.wait(timeout=60)
    return runs


def report(figures: dict) -> str:
    lines = [
        "# `numgen serve` under load",
        "",
        f"{figures['when']}.",
        machine_line(figures),
        "Clients (asyncio, one process, one kept-alive connection each) and server share the 2 cores.",
        "Targets: 50 clients, decode p99 < 50 ms, write p99 < 100 ms, no errors. At 200 and 600"
        " clients: the p99 of the answers 200 within the server's admission bound"
        " (`numgen serve --max-wait`, 1 s unless the command passes another), the rest 503.",
        "",
        "Answers 200 are timed (p50, p99, max); a 503 (busy) is counted apart, with the share of"
        " answers it made and its own p99, and its client waits Retry-After before the next.",
        "",
        "| server | endpoint | clients | requests | requests/s | p50 ms | p99 ms | max ms | errors"
        " | 503s | share 503 | 503 p99 ms"
        " | server CPU ms / request | of which the model thread | cores the server got"
        " | rows per model call (mean / max) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for run in (r for r in figures["runs"] if "endpoint" in r):
        rows = f"{run['mean_rows']} / {run['max_rows']}" if "mean_rows" in run else "-"
        lines.append(
            f"| {run['server']} | {run['endpoint']} | {run['clients']} | {run['requests']}"
            f" | {run['requests_per_s']} | {run['p50_ms']} | {run['p99_ms']} | {run['max_ms']}"
            f" | {run['errors']} | {run.get('refused_503', '-')} | {run.get('refused_share', '-')}"
            f" | {run.get('p99_503_ms') or '-'} | {run['server_cpu_ms_per_request']}"
            f" | {run.get('model_cpu_ms_per_request', '-')} | {run['server_cpu_share']} | {rows} |"
        )
    memory = [r for r in figures["runs"] if "uploads" in r]
    if memory:
        lines += [
            "",
            "Server memory (RSS) around concurrent uploads of a ~4 MiB PNG to `/api/style`:",
            "",
            "| server | uploads | MiB each | seconds | statuses | RSS before MB | RSS after MB"
            " | 2 s later MB |",
            "|---|---:|---:|---:|---|---:|---:|---:|",
        ]
        lines += [
            f"| {r['server']} | {r['uploads']} | {r['upload_mib']} | {r['seconds']}"
            f" | {r['statuses']} | {r['rss_before_mb']} | {r['rss_after_mb']}"
            f" | {r['rss_2s_later_mb']} |"
            for r in memory
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--clients", type=int, nargs="+", default=[50], help="Client counts, each measured."
    )
    parser.add_argument("--results", default="serve_load", help="bench/results/NAME.{md,json}.")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--model", action="append", default=[], help="As `numgen serve --model`.")
    parser.add_argument(
        "--uploads", type=int, default=60, help="Concurrent ~4 MiB uploads (0: none)."
    )
    parser.add_argument(
        "--write-model", action="append", default=[],
        help="Also load write with this served model as the writer (e.g. cvae).",
    )  # fmt: skip
    parser.add_argument("--baseline", help="Also measure numgen at this git commit, first.")
    parser.add_argument(
        "--serve-option", action="append", default=[], help="An option for this version's server."
    )
    args = parser.parse_args()

    load_before = load_average()  # the machine is shared: say how busy it was
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        if args.baseline:
            source = subprocess.run(
                ["git", "archive", args.baseline, "src"], check=True, capture_output=True
            ).stdout
            subprocess.run(["tar", "-x", "-C", folder], input=source, check=True)
            env = {**os.environ, "PYTHONPATH": str(Path(folder) / "src")}
            old = [sys.executable, "-c", "from numgen.cli import run; run()"]
            plain = argparse.Namespace(**{**vars(args), "serve_option": []})
            runs += measure(f"{args.baseline} (before)", old, env, plain)
        options = " ".join(args.serve_option)
        runs += measure(f"this version {options}".strip(), [str(NUMGEN)], dict(os.environ), args)

    figures = {
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "command": command(),
        "load_average": [load_before, load_average()],
        "runs": runs,
    }
    write_results(args.results, figures, report(figures))
    print(report(figures))


if __name__ == "__main__":
    main()
