"""`numgen serve`: the web page and HTTP API (FastAPI on uvicorn), from the extra `numgen[web]`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Annotated

import typer

from numgen.cli.common import app, console
from numgen.errors import NumgenError

# The top-level modules of the `web` extra's packages (and of what they bring).
WEB_MODULES = {"fastapi", "fastapi_offline", "multipart", "python_multipart", "pydantic",
               "starlette", "uvicorn"}  # fmt: skip


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
) -> None:
    """Serve the page (latent explorer, number writer, digit grid) and the HTTP API."""
    uvicorn, create_app = web_stack()
    web_app = create_app(model_sources(model) if model else None)
    address = f"[{host}]" if ":" in host else host  # an IPv6 address goes in brackets in a URL
    url = f"http://{address}:{port}"
    console.print(f"numgen is at [bold]{url}[/bold] (API docs at {url}/docs); Ctrl+C stops")
    uvicorn.run(web_app, host=host, port=port, log_level="warning")
