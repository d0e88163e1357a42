"""A bounded load test of `numgen serve` on loopback: decode and write under many clients.

    flock /tmp/numgen-cpu.lock .venv/bin/python bench/serve_load.py [--clients 50] [--seconds 20]
        [--model NAME=DIR ...]

Starts `numgen serve` on a free loopback port (the bundled models, or the --model ones) and
waits until it answers. Then, one endpoint at a time, runs asyncio clients, each sending
requests back to back on its own kept-alive connection until the time is up, every request a
fresh random one:

- ``decode``, 1 client: the latency of one latent point when the server is idle;
- ``decode``, C clients: the page's request (``format=json``) for random points in [-3, 3]²;
- ``write``, C clients: numbers of 1-8 digits, random style seed and seed, 56 px high, as PNG.

Reports requests/s, p50/p99/max latency and errors (any answer but 200, or a failed
connection) to stdout and bench/results/serve_load.{md,json}. The clients share the machine's
cores with the server, so the figures are a floor for what the server alone could do. The
server is stopped at the end whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import statistics
import subprocess
import sys
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


async def get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str) -> int:
    """One HTTP/1.1 GET on a kept-alive connection, reading the whole answer: its status."""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    fields = dict(line.lower().split(":", 1) for line in head[1:] if line)
    await reader.readexactly(int(fields["content-length"]))
    return int(head[0].split()[1])


async def load(
    port: int, url_for: Callable[[random.Random], str], clients: int, seconds: float
) -> dict:
    """``clients`` clients, each on its own kept-alive connection, sending requests back to back
    for ``seconds``; the figures. The clients speak HTTP/1.1 over asyncio streams directly: httpx
    spent 6-12 ms of CPU per request here with 50 connections, more than the server, and the two
    share the cores."""
    latencies: list[float] = []
    errors: Counter[str] = Counter()

    async def client(index: int, deadline: float) -> None:
        rng = random.Random(index)
        connection = None
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            try:
                connection = connection or await asyncio.open_connection("127.0.0.1", port)
                status = await asyncio.wait_for(get(*connection, url_for(rng)), timeout=60)
            except (OSError, EOFError, TimeoutError, ValueError, KeyError) as err:
                errors[type(err).__name__] += 1
                if connection:
                    connection[1].close()
                connection = None
                continue
            if status == 200:
                latencies.append(time.perf_counter() - start)
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


def report(figures: dict) -> str:
    lines = [
        "# `numgen serve` under load",
        "",
        f"{figures['when']}; server: `{figures['server']}`.",
        machine_line(figures),
        "Clients (asyncio, one process, one kept-alive connection each) and server share the cores.",
        "",
        "| endpoint | clients | requests | requests/s | p50 ms | p99 ms | max ms | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in figures["runs"]:
        lines.append(
            f"| {run['endpoint']} | {run['clients']} | {run['requests']} | {run['requests_per_s']}"
            f" | {run['p50_ms']} | {run['p99_ms']} | {run['max_ms']} | {run['errors']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--model", action="append", default=[], help="As `numgen serve --model`.")
    args = parser.parse_args()

    load_before = load_average()  # the machine is shared: say how busy it was
    port = free_port()
    serve = [str(NUMGEN), "serve", "--port", str(port)]
    serve += [f"--model={model}" for model in args.model]
    server = subprocess.Popen(serve, stdout=subprocess.DEVNULL)
    try:
        wait_until_up(server, port)
        plan = [
            ("decode", decode_url, 1, min(args.seconds, 5.0)),
            ("decode", decode_url, args.clients, args.seconds),
            ("write", write_url, args.clients, args.seconds),
        ]
        runs = []
        for endpoint, url_for, clients, seconds in plan:
            run = {"endpoint": endpoint, **asyncio.run(load(port, url_for, clients, seconds))}
            print(json.dumps(run))
            runs.append(run)
    finally:
        server.terminate()
        server.wait(timeout=30)

    figures = {
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "command": command(),
        "server": " ".join(["numgen", *serve[1:]]),
        "load_average": [load_before, load_average()],
        "runs": runs,
    }
    write_results("serve_load", figures, report(figures))
    print(report(figures))


if __name__ == "__main__":
    main()
