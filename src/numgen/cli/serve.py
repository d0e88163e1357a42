"""`numgen serve`: the web page and HTTP API (FastAPI on uvicorn), from the extra `numgen[web]`."""

from __future__ import annotations

import copy
import json
import os
import socket
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Annotated

import typer

from numgen.cli.common import DrawPrecision, app, console
from numgen.errors import NumgenError
from numgen.models.sampling import check_precision

# The top-level modules of the `web` extra's packages (and of what they bring).
WEB_MODULES = {"fastapi", "fastapi_offline", "greenback", "greenlet", "multipart", "outcome",
               "python_multipart", "pydantic", "sniffio", "starlette", "uvicorn"}  # fmt: skip


def web_stack() -> tuple[ModuleType, Callable]:
    """(uvicorn, numgen.web.create_app), or a NumgenError saying how to install them. Imported
    here, not at start-up: the other commands need neither, and a plain install lacks them."""
    try:
        import uvicorn

        from numgen.web import create_app
    except ModuleNotFoundError as err:
        if (err.name or "").split(".")[0] not in WEB_MODULES:
            raise  # not the web extra: a bug, with its traceback
        raise NumgenError(
            f"numgen serve needs the web extra ({err.name} is not installed): "
            "pip install 'numgen[web]'"
        ) from None
    return uvicorn, create_app


def model_sources(specs: list[str]) -> dict[str, str]:
    """``--model`` values -> {served name: source}: ``NAME=DIR`` (split at the first ``=``), or a
    directory or bundled name alone, served under its last path part."""
    sources = {}
    for spec in specs:
        name, _, source = spec.partition("=")
        if not source:  # no NAME=: the spec is the source, named after its folder
            name, source = Path(spec).name, spec
        if name in sources:
            raise typer.BadParameter(f"two models are named {name!r}", param_hint="--model")
        sources[name] = source
    return sources


def log_config(access_log: bool) -> dict:
    """uvicorn's logging set-up plus numgen's access log (one line per request with its time)
    on stderr; every worker process applies it."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["numgen"] = {"format": "%(asctime)s %(message)s"}
    config["handlers"]["numgen"] = {
        "class": "logging.StreamHandler", "formatter": "numgen", "stream": "ext://sys.stderr",
    }  # fmt: skip
    level = "INFO" if access_log else "WARNING"
    # not passed on to the root logger as well, where the CLI's handler would print it again
    config["loggers"]["numgen.web.access"] = {
        "handlers": ["numgen"], "level": level, "propagate": False,
    }  # fmt: skip
    return config


def check_listen(host: str, port: int) -> None:
    """Refuse, before the models load, an address this machine cannot listen on (unknown, not
    its own, or its port taken): uvicorn would log it and exit with code 3."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as err:
        raise NumgenError(f"--host {host}: not an address ({err}); try 127.0.0.1") from None
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind(address)
        except OSError as err:
            raise NumgenError(
                f"cannot listen on {host} port {port} ({err.strerror or err}); choose another "
                "--port, or another --host"
            ) from None


@app.command("serve")
def serve_command(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
    model: Annotated[
        list[str] | None,
        typer.Option(
            help="A model to serve: a bundled name, a run/model directory, or NAME=DIR; "
            "repeat for several. Default: the bundled models."
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(help="Server processes, each with its own copy of the models.", min=1, max=64),
    ] = 1,
    max_pending: Annotated[
        int,
        typer.Option(help="API requests at once per process; more get a 503.", min=1, max=10**5),
    ] = 256,
    timeout: Annotated[
        float,
        typer.Option(help="Seconds one request may take; then it gets a 503.", min=0.1, max=3600),
    ] = 10.0,
    max_wait: Annotated[
        float,
        typer.Option(
            help="Seconds a new API request may expect to take, by the work queued ahead of it "
            "and a margin from recent answers; beyond, it gets a 503 with Retry-After at once.",
            min=0.01,
            max=3600,
        ),
    ] = 1.0,
    read_timeout: Annotated[
        float,
        typer.Option(
            help="Seconds a client has to send a whole request (headers and body); then the "
            "connection is closed.",
            min=0.1,
            max=3600,
        ),
    ] = 10.0,
    max_connections: Annotated[
        int | None,
        typer.Option(
            help="Open connections per process; more are answered 503 and closed "
            "[default: the open-files limit less 128].",
            min=1,
        ),
    ] = None,
    batch_wait_ms: Annotated[
        float,
        typer.Option(help="Milliseconds a model call waits for others.", min=0, max=100),
    ] = 2.0,
    threads: Annotated[
        int,
        typer.Option(
            help="PyTorch threads per process (1 leaves cores to requests).", min=1, max=1024
        ),
    ] = 1,
    access_log: Annotated[
        bool, typer.Option(help="Log one line per request to stderr, with its time.")
    ] = True,
    precision: DrawPrecision = "fp32",
) -> None:
    """Serve the page (latent explorer, number writer, digit grid) and the HTTP API.

    Model calls of concurrent requests are batched; when MAX_PENDING requests are running the
    next gets a 503 with Retry-After; SIGTERM or Ctrl+C lets the requests in flight finish."""
    if not host.strip():
        raise typer.BadParameter(
            "give an address (127.0.0.1 for this machine only, 0.0.0.0 for every interface)",
            param_hint="--host",
        )
    check_precision(precision)  # before the port is tried or any model read
    check_listen(host, port)
    uvicorn, create_app = web_stack()
    from numgen.web.app import SETTINGS_ENV  # the web stack is there: web_stack() said so
    from numgen.web.connections import (
        MAX_CONNECTIONS_ENV,
        READ_TIMEOUT_ENV,
        TimedH11Protocol,
        default_max_connections,
    )
    from numgen.web.served import freeze_survivors, prepare_process

    settings = {
        "models": model_sources(model) if model else None,
        "max_pending": max_pending,
        "timeout": timeout,
        "batch_wait": batch_wait_ms / 1000,
        "max_wait": max_wait,
        "precision": precision,
    }
    # the connection protocol's limits, here and (from the environment) in worker processes
    TimedH11Protocol.read_timeout = read_timeout
    TimedH11Protocol.max_connections = max_connections or default_max_connections()
    os.environ[READ_TIMEOUT_ENV] = str(TimedH11Protocol.read_timeout)
    os.environ[MAX_CONNECTIONS_ENV] = str(TimedH11Protocol.max_connections)
    if workers == 1:  # this process serves: set it up, build the app (reporting a bad model)
        prepare_process(threads)
        target = create_app(**settings)
        freeze_survivors()
    else:  # each worker process sets itself up and builds its app from its environment
        create_app(**settings)  # check the models once here, to report a bad one plainly
        os.environ[SETTINGS_ENV] = json.dumps({**settings, "threads": threads})
        target = "numgen.web.app:create_app_from_environment"
    address = f"[{host}]" if ":" in host else host  # an IPv6 address goes in brackets in a URL
    url = f"http://{address}:{port}"
    console.print(f"numgen is at [bold]{url}[/bold] (API docs at {url}/docs); Ctrl+C stops")
    uvicorn.run(
        target, host=host, port=port, workers=workers, factory=workers > 1,
        log_level="warning", log_config=log_config(access_log), access_log=False,
        http="numgen.web.connections:TimedH11Protocol",
        timeout_graceful_shutdown=int(timeout) + 5,  # requests in flight end within their limit
    )  # fmt: skip
