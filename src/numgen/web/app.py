"""The numgen web app: a thin FastAPI layer over :mod:`numgen.generate` and :mod:`numgen.compose`.

``create_app`` loads each model once, encodes the embedded MNIST test digits with every model that
has a 2-D latent (the explorer's scatter) and returns an app serving

    /                    the page (static/index.html, app.js, style.css)
    /docs                the OpenAPI docs of the endpoints below (works offline too)
    GET  /api/models     served models, which one the explorer and the writer use, input limits
    GET  /api/scatter    test digits encoded in a 2-D latent plane: points + labels (JSON)
    GET  /api/decode     one latent point -> a 28×28 digit
    GET  /api/manifold   an n×n grid of digits decoded over a rectangle of the latent plane
    GET  /api/digits     n samples of one digit, as a grid
    GET  /api/write      a whole number written in one style
    POST /api/style      an uploaded image of a digit -> its style (latent vector) for /api/write
    GET  /healthz        the server is up: requests in progress, refused, batch sizes, model time

Images come back as PNG (white ink on black, as MNIST) or, with ``format=json``, as JSON holding
the PNG in base64 beside the request's values. Every input is checked before it reaches a model:
a bad one gets a 4xx JSON answer whose ``detail`` names it; malformed requests never give a 500.

Handlers run on the event loop and await their model calls, which are batched across requests and
run in one model thread (:mod:`numgen.web.batching`); large PNGs are encoded in a worker thread,
uploads are read in one (:mod:`numgen.web.uploads`), and the middleware of :mod:`numgen.web.guard`
bounds the load, logs, and answers repeated queries with 304.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from fastapi import FastAPI, HTTPException, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from PIL import Image
from pydantic import Field

from numgen import __version__, compose, generate, hub, legibility, plots
from numgen.config import MAX_SEED
from numgen.data import load_digits
from numgen.errors import NonFiniteImage
from numgen.models.sampling import check_precision
from numgen.recognizer import Recognizer
from numgen.web.batching import BATCH_SECONDS, WAIT, BatchedChecker, BatchedModel, Batcher, run
from numgen.web.guard import Guard, HttpCache, LimitBody, Load
from numgen.web.served import (
    Served,
    freeze_survivors,
    png_bytes,
    prepare_process,
    scatter,
    warm_up,
    weights_digest,
)
from numgen.web.uploads import (
    MAX_UPLOAD_BYTES,
    UPLOAD_FORMATS,
    with_upload,
)

STATIC_DIR = Path(__file__).parent / "static"

MAX_COORDINATE = 10.0  # |z| beyond this is far outside any trained prior N(0, I)
MAX_SAMPLES = 100  # digits per /api/digits request
MAX_GRID = 40  # manifold points per side
MIN_HEIGHT, MAX_HEIGHT = 14, 112  # pixel height of a written number
SETTINGS_ENV = "NUMGEN_SERVE_SETTINGS"  # create_app's arguments, as JSON, for worker processes
MAX_PENDING = 256  # requests to /api/ at once; the next one gets a 503 with Retry-After
TIMEOUT = 10.0  # seconds a request may take before it gets a 503
MAX_WAIT = 1.0  # seconds a request may expect to take (see guard.Load), or it gets a 503
# A request body this much bigger than the largest upload is refused before it is read.
MAX_BODY_BYTES = MAX_UPLOAD_BYTES + 64 * 1024

# Argument types shared by the endpoints; FastAPI turns a violation into a 422 naming the field.
Coordinate = Annotated[
    float, Field(ge=-MAX_COORDINATE, le=MAX_COORDINATE, allow_inf_nan=False)
]  # fmt: skip
ModelName = Annotated[
    str | None, Query(description="A served model (see /api/models); default: the page's choice.")
]
Digit = Annotated[int | None, Query(ge=0, le=9, description="Digit 0-9 (conditional models).")]
Seed = Annotated[
    int, Query(ge=0, le=MAX_SEED, description="Random seed: the same seed gives the same output.")
]
Format = Annotated[
    Literal["png", "json"], Query(description="png, or json with the PNG in base64.")
]
PNG_RESPONSE = {200: {"content": {"image/png": {}}, "description": "A grey PNG (or JSON)."}}
# Pictures up to this many pixels (a written number, a few digits) are encoded on the event loop,
# larger ones (a 40×40 manifold takes milliseconds) in a worker thread.
LOOP_PNG_PIXELS = 64 * 1024


async def image_response(image: np.ndarray | Image.Image, format: str, **values) -> Response:
    """The image as PNG, or as JSON ``{**values, width, height, png: base64}``."""
    height, width = image.shape if isinstance(image, np.ndarray) else (image.height, image.width)
    if height * width <= LOOP_PNG_PIXELS:
        png = png_bytes(image)
    else:
        png = await asyncio.to_thread(png_bytes, image)
    if format == "png":
        return Response(png, media_type="image/png")
    encoded = base64.b64encode(png).decode("ascii")
    return JSONResponse({**values, "width": width, "height": height, "png": encoded})


def create_app(
    models: dict[str, str] | None = None, max_pending: int = MAX_PENDING,
    timeout: float = TIMEOUT, batch_wait: float = WAIT, max_wait: float = MAX_WAIT,
    batch_seconds: float = BATCH_SECONDS, checker: Recognizer | None = None,
    precision: str = "fp32",
) -> FastAPI:  # fmt: skip
    """The app serving ``models`` (served name -> bundled name or model directory; default: the
    bundled generators). Every model is loaded, and every 2-D one encodes the test digits, here.

    At most ``max_pending`` API requests run at once, and none is let in that would take longer
    than ``max_wait`` seconds (:class:`~numgen.web.guard.Load`); each runs for at most
    ``timeout`` seconds; model calls wait up to ``batch_wait`` seconds to be batched with other
    requests', in batches of up to ``batch_seconds`` of model time. The models that check their
    digits' legibility read them with ``checker`` (default: the bundled checker, loaded here),
    batched with the models' calls. Every network pass, the check's among them, runs at
    ``precision`` (``numgen.models.sampling.PRECISIONS``). It changes nothing of the process: a
    server sets that up where it starts (:mod:`numgen.web.served`)."""
    check_precision(precision)
    sources = {name: name for name in hub.generator_names()} if models is None else models
    if not sources:
        raise hub.ModelError(
            "no models to serve: none bundled; train one and pass its directory (--model DIR)"
        )
    test = load_digits("embedded", "test")  # 1,000 real MNIST digits that ship with numgen
    load = Load(max_pending, timeout, max_wait)
    batcher = Batcher(batch_wait, in_progress=lambda: load.pending, batch_seconds=batch_seconds)
    loaded = {name: hub.load(source) for name, source in sources.items()}
    if checker is None and any(m.sampling.check is not None for m in loaded.values()):
        checker = Recognizer.from_pretrained(legibility.BUNDLED_CHECKER)
    reads = None if checker is None else BatchedChecker(checker, batcher, precision)
    served = {}
    for name, model in loaded.items():
        batched = BatchedModel(model, batcher, precision)
        served[name] = Served(
            name, model, batched,
            scatter(name, model, test) if model.has_latent_plane else None,
            compose.Writer(batched, checker=reads) if model.conditional else None,
        )  # fmt: skip
    # The explorer prefers a plain 2-D VAE (its latent holds the digit), the writer the default
    # writer (compose.DEFAULT_WRITER) when it is served, else the first conditional model.
    explorer = next(
        (s.name for s in served.values() if s.scatter and not s.writer),
        next((s.name for s in served.values() if s.scatter), None),
    )
    writer = next(
        (s.name for s in served.values() if s.writer and s.name == compose.DEFAULT_WRITER),
        next((s.name for s in served.values() if s.writer), None),
    )
    warm_up(served.values(), None if checker is None else legibility.reader(checker))
    batcher.sizes.clear()
    batcher.model_seconds = 0.0

    app = FastAPIOffline(  # FastAPI whose /docs page ships Swagger UI instead of using a CDN
        title="numgen",
        version=__version__,
        description="Handwritten digits and numbers from generative models trained on MNIST. "
        "Images are white ink on black, 28 pixels per digit; `format=json` returns the PNG in "
        "base64. Answers to GET are deterministic and carry an ETag.",
    )
    # The last added runs first: the guard sees every request, then the size limit, the cache.
    cached = {"/api/models", "/api/scatter", "/api/decode", "/api/manifold", "/api/digits",
              "/api/write"}  # fmt: skip
    digest = weights_digest({name: s.model for name, s in served.items()}, precision)
    app.add_middleware(HttpCache, identity=digest, paths=cached)
    detail = f"request body larger than {MAX_UPLOAD_BYTES // 2**20} MiB"
    app.add_middleware(LimitBody, limit=MAX_BODY_BYTES, detail=detail)
    app.add_middleware(Guard, load=load, endpoints=frozenset(cached | {"/api/style"}))

    def pick(name: str | None, default: str | None, use: str) -> Served:
        """The served model asked for, or the default one for this use; 404 when unknown."""
        name = name if name is not None else default
        if name is None:
            raise HTTPException(404, f"model: no served model is suited to {use}")
        if name not in served:
            raise HTTPException(404, f"model: unknown {name!r}; served: {', '.join(served)}")
        return served[name]

    def labels_for(chosen: Served, digit: int | None) -> int | None:
        """The digit a conditional model needs; a plain VAE takes none."""
        conditional = chosen.model.conditional
        if conditional and digit is None:
            raise HTTPException(400, f"digit: model {chosen.name!r} draws a given digit; pass 0-9")
        if not conditional and digit is not None:
            raise HTTPException(400, f"digit: model {chosen.name!r} is not conditional; omit it")
        return digit

    def writer_model(name: str | None, use: str) -> Served:
        chosen = pick(name, writer, use)
        if chosen.writer is None:
            raise HTTPException(400, f"model: {chosen.name!r} is not conditional; {use} needs one")
        return chosen

    def explorer_model(name: str | None) -> Served:
        chosen = pick(name, explorer, "the latent explorer")
        if chosen.scatter is None:
            raise HTTPException(400, f"model: {chosen.name!r} has no 2-D latent to explore")
        return chosen

    @app.exception_handler(NonFiniteImage)  # the served model's fault, not the request's
    async def non_finite(request: Request, err: NonFiniteImage) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, status_code=500)

    @app.exception_handler(compose.ComposeError)
    async def compose_error(request: Request, err: compose.ComposeError) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, status_code=400)

    @app.get("/healthz", tags=["server"])
    async def health() -> dict:
        """The server is up: API requests in progress and refused (503) so far, the server's
        seconds per request of each endpoint and how much later than estimated its answers
        came (the guard's measures, :class:`numgen.web.guard.Load`), how many model calls ran
        with how many rows (the batch sizes reached), and the model thread's CPU seconds."""
        return {
            "status": "ok",
            "pending": load.pending,
            "refused": load.refused,
            "service_s": {e: round(seconds, 4) for e, seconds in load.services().items()},
            "margin_s": {e: round(load.margin(e), 4) for e in load.services()},
            "batch_rows": dict(sorted(batcher.sizes.items())),
            "model_cpu_seconds": round(batcher.model_seconds, 3),
        }

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/api/models", tags=["models"])
    async def list_models() -> dict:
        """The served models, the default for the explorer and the writer, and the input limits."""
        return {
            "models": [s.info() for s in served.values()],
            "explorer": explorer,
            "writer": writer,
            "limits": {
                "max_coordinate": MAX_COORDINATE, "max_samples": MAX_SAMPLES,
                "max_grid": MAX_GRID, "max_digits": compose.MAX_DIGITS, "max_seed": MAX_SEED,
                "min_height": MIN_HEIGHT, "max_height": MAX_HEIGHT,
                "max_upload_bytes": MAX_UPLOAD_BYTES, "upload_formats": UPLOAD_FORMATS,
            },
        }  # fmt: skip

    @app.get("/api/scatter", tags=["latent space"])
    def latent_scatter(model: ModelName = None) -> JSONResponse:
        """The 1,000 embedded MNIST test digits encoded into a 2-D latent (posterior means):
        ``points`` [[z0, z1], ...], ``labels`` [digit, ...] and their ``bounds``."""
        return JSONResponse(explorer_model(model).scatter)

    @app.get("/api/decode", tags=["latent space"], responses=PNG_RESPONSE)
    async def decode(
        z: Annotated[
            list[Coordinate],
            Query(description="The latent point, one value per dimension: z=0.5&z=-1.2."),
        ],
        model: ModelName = None,
        digit: Digit = None,
        format: Format = "png",
    ) -> Response:
        """Decode one latent point into a 28×28 digit."""
        chosen = pick(model, explorer, "decoding")
        if not chosen.model.has_latent:
            raise HTTPException(
                400, f"model: {chosen.name!r} has no latent space to decode; /api/digits draws it"
            )
        if len(z) != chosen.model.style_dim:
            dims = chosen.model.style_dim
            raise HTTPException(400, f"z: model {chosen.name!r} takes {dims} values, got {len(z)}")
        image = (await run(generate.draw, chosen.batched, [z], labels_for(chosen, digit)))[0]
        return await image_response(image, format, model=chosen.name, z=z, digit=digit)

    @app.get("/api/manifold", tags=["latent space"], responses=PNG_RESPONSE)
    async def manifold(
        x_min: Coordinate = -1.5,
        x_max: Coordinate = 1.5,
        y_min: Coordinate = -1.5,
        y_max: Coordinate = 1.5,
        n: Annotated[int, Query(ge=2, le=MAX_GRID, description="Digits per side.")] = 30,
        model: ModelName = None,
        digit: Digit = None,
        format: Format = "png",
    ) -> Response:
        """Digits decoded at the centres of an n×n tiling of the rectangle [x_min, x_max] ×
        [y_min, y_max] of a 2-D latent: one (28·n)² picture, top row at y_max, as the plane is
        drawn, so it lines up with the rectangle it covers."""
        if not (x_min < x_max and y_min < y_max):
            raise HTTPException(400, "x_min/x_max, y_min/y_max: each minimum must be below its max")
        chosen = explorer_model(model)
        unit = generate.latent_grid(n, 0.5 / n, 1 - 0.5 / n)  # cell centres of [0, 1]², in order
        z = np.array([x_min, y_min]) + unit * np.array([x_max - x_min, y_max - y_min])
        images = await run(generate.draw, chosen.batched, z, labels_for(chosen, digit))
        bounds = {"x_min": x_min, "x_max": x_max, "y_min": y_min, "y_max": y_max}
        return await image_response(plots.tile(images, n, pad=0), format, model=chosen.name, n=n,
                              digit=digit, **bounds)  # fmt: skip

    @app.get("/api/digits", tags=["generation"], responses=PNG_RESPONSE)
    async def digits(
        digit: Annotated[int, Query(ge=0, le=9, description="The digit to draw, 0-9.")],
        n: Annotated[int, Query(ge=1, le=MAX_SAMPLES, description="How many samples.")] = 10,
        seed: Seed = 0,
        model: ModelName = None,
        format: Format = "png",
    ) -> Response:
        """n samples of one digit in a grid of up to 10 columns (2 px gaps)."""
        chosen = writer_model(model, "drawing a chosen digit")
        grid = plots.tile(await run(chosen.writer.digits, digit, n, seed), min(n, 10))
        return await image_response(grid, format, model=chosen.name, digit=digit, n=n, seed=seed)

    @app.get("/api/write", tags=["generation"], responses=PNG_RESPONSE)
    async def write(
        text: Annotated[
            str,
            Query(
                max_length=compose.MAX_DIGITS,
                description="The number: digits 0-9 and . , - + / : ( ) or spaces, e.g. 2026, "
                "02.12.2026 or +7 (812) 555-01-23.",
            ),
        ],
        style: Annotated[
            list[Coordinate] | None,
            Query(description="A style latent (from POST /api/style); default: from style_seed."),
        ] = None,
        style_seed: Seed = 0,
        seed: Seed = 0,
        height: Annotated[int, Query(ge=MIN_HEIGHT, le=MAX_HEIGHT, description="Pixels.")] = 28,
        ink: Annotated[
            Literal[compose.INKS], Query(description="light: white on black; dark: on white.")
        ] = "light",
        model: ModelName = None,
        format: Format = "png",
    ) -> Response:
        """A number written by hand: every digit drawn in one style (a style latent, or one drawn
        from ``style_seed``); ``seed`` varies the digits within that style."""
        chosen = writer_model(model, "writing numbers")
        try:
            compose.check_text(text)
        except compose.ComposeError as err:  # a bad argument, as FastAPI answers the others
            raise HTTPException(422, f"text: {err}") from None
        image = await run(
            chosen.writer.write,
            text, None if style is None else np.asarray(style), style_seed, seed, height, ink,
        )  # fmt: skip
        return await image_response(image, format, model=chosen.name, text=text, style=style,
                              style_seed=style_seed, seed=seed, height=height, ink=ink)  # fmt: skip

    @app.post("/api/style", tags=["generation"])
    def style_from_image(image: UploadFile, model: ModelName = None) -> dict:
        """The style latent of an uploaded image of one handwritten digit (PNG, JPEG, GIF, BMP or
        WebP, up to 4 MiB), to pass to /api/write as ``style``."""
        chosen = writer_model(model, "copying a style")
        if not chosen.model.can_encode_style:
            raise HTTPException(400, f"model: {chosen.name!r} cannot read a style from a picture")
        style = with_upload(image, chosen.writer.style_from_image)
        return {"model": chosen.name, "style": style.astype(np.float64).tolist()}  # exact values

    # Starlette tries the routes in turn: the API's first (the docs' and the page's came first),
    # 25 µs less per API request, 5 % of a decode's CPU.
    app.router.routes.sort(key=lambda route: not getattr(route, "path", "").startswith("/api/"))
    return app


def create_app_from_environment() -> FastAPI:
    """A worker process of ``numgen serve --workers N`` starting: the process settings, then
    :func:`create_app`, with the arguments in ``$NUMGEN_SERVE_SETTINGS`` (JSON)."""
    settings = json.loads(os.environ[SETTINGS_ENV])
    prepare_process(settings.pop("threads"))
    app = create_app(**settings)
    freeze_survivors()
    return app
