"""The FastAPI inference server: `create_app(settings)` builds it; importing this module does nothing.

The model is loaded by the lifespan in the background, so `/health` answers at once while `/ready`
says 503 (with the reason) until the model is loaded and warmed up, or for good if it failed.

Three protocols share one batcher: the project's `/predict`, MLflow's scoring server
(`/invocations`, `/ping`, `/version`; `serving.mlflow_protocol`) and the Open Inference Protocol v2
of KServe and Triton (`/v2/...`; `serving.v2`), one router each (`serving.routes`), with the
runtime and settings as dependencies. Overload answers 503 + Retry-After in each.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving.batching import ClientGone
from serving.door import DOOR_STATE_KEY, OverloadDoor
from serving.metrics import ServingMetrics
from serving.middleware import AdmissionGuard, BodyGuard, RequestMetrics
from serving.routes import mlflow, native, v2
from serving.routes.deps import ENDPOINTS
from serving.runtime import ModelRuntime
from serving.settings import ServeSettings
from serving.validation import RequestProblem

log = logging.getLogger(__name__)

# status recorded for a request whose client disconnected before its batch (nginx's convention)
CLIENT_CLOSED_REQUEST = 499
# the scoring endpoints, refused while the worker is full (serving.door, AdmissionGuard)
SCORING_PATHS = ("/predict", "/invocations")
SCORING_PREFIXES = ("/v2/models/",)


def _tracking_uri() -> str:
    """MLFLOW_TRACKING_URI, else the project's local store (never MLflow's `./mlflow.db` default)."""
    from shared.mlflow_utils import tracking_uri
    from shared.settings import Settings

    return tracking_uri(Settings())


def _format_validation_errors(exc: RequestValidationError) -> JSONResponse:
    """422 with a one-line detail naming each problem (no echo of the input, no exception objects)."""
    errors, messages = [], []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        kind = str(err.get("type", "value_error"))
        if kind == "json_invalid":
            msg = f"request body is not valid JSON: {err.get('ctx', {}).get('error', err.get('msg'))}"
            messages.append(msg)
        else:
            msg = str(err.get("msg", "invalid value"))
            where = ".".join(loc[1:]) if loc[:1] == ["body"] else ".".join(loc)
            messages.append(f"{where or 'body'}: {msg}")
        errors.append({"loc": loc, "msg": msg, "type": kind})
    detail = "; ".join(messages)
    return JSONResponse(status_code=422, content={"detail": detail or "invalid request", "errors": errors})


def create_app(
    settings: ServeSettings | None = None,
    *,
    tracking_uri: str | None = None,
    load_before_serving: bool = False,
) -> FastAPI:
    """Build the app. `settings` defaults to the SERVE_* environment; MLFLOW_TRACKING_URI is read here.

    `load_before_serving`: the lifespan's start-up waits for the model and fails if it cannot load,
    for hosts that gate traffic on start-up (Ray Serve) rather than on `/ready` (Gunicorn, Kubernetes).
    """
    settings = settings or ServeSettings()
    metrics = ServingMetrics()
    runtime = ModelRuntime(settings=settings, metrics=metrics, tracking_uri=tracking_uri or _tracking_uri())
    door = OverloadDoor(
        runtime,
        paths=SCORING_PATHS,
        prefixes=SCORING_PREFIXES,
        endpoints=ENDPOINTS,
        refused_pause_ms=settings.refused_pause_ms,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        loading = asyncio.create_task(runtime.load(), name="model-load")
        if load_before_serving:
            await asyncio.shield(loading)
            if not runtime.ready:
                raise RuntimeError(runtime.reason)
        try:
            yield {DOOR_STATE_KEY: door}  # the ASGI server's protocol reads it (serving.door)
        finally:
            loading.cancel()
            try:
                await loading
            except asyncio.CancelledError:
                pass
            await runtime.close()

    app = FastAPI(
        title="Emotion classifier",
        summary="Classifies English text into sadness, joy, love, anger, fear or surprise.",
        version="1.0.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.runtime = runtime

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _format_validation_errors(exc)

    @app.exception_handler(ClientGone)
    async def on_client_gone(request: Request, exc: ClientGone) -> Response:
        return Response(status_code=CLIENT_CLOSED_REQUEST)  # nobody reads it; the metrics do

    @app.exception_handler(RequestProblem)
    async def on_request_problem(request: Request, exc: RequestProblem) -> JSONResponse:
        return JSONResponse(status_code=exc.status_code, content={"detail": exc.message}, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = str(exc.detail)
        if exc.status_code == 400 and detail == "There was an error parsing the body":
            detail = "request body could not be parsed as JSON (not UTF-8, or nested too deeply)"
        return JSONResponse(status_code=exc.status_code, content={"detail": detail}, headers=exc.headers)

    for protocol in (native, mlflow, v2):
        app.include_router(protocol.router)
    app.add_middleware(BodyGuard, max_body_bytes=settings.max_body_bytes, json_paths=["/predict"])
    app.add_middleware(AdmissionGuard, door=door)
    app.add_middleware(RequestMetrics, metrics=metrics, endpoints=ENDPOINTS)
    return app
