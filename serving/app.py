"""The FastAPI inference server: `create_app(settings)` builds it; importing this module does nothing.

The model is loaded by the lifespan in the background, so `/health` answers at once while `/ready`
says 503 (with the reason) until the model is loaded and warmed up, or for good if it failed.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving.batching import BatcherClosed
from serving.metrics import ServingMetrics
from serving.middleware import BodyGuard, RequestMetrics
from serving.runtime import ModelRuntime, build_predictions
from serving.schemas import (
    ErrorResponse,
    Health,
    ModelInfo,
    PredictRequest,
    PredictResponse,
    Readiness,
    ServiceInfo,
)
from serving.settings import ServeSettings
from serving.validation import RequestProblem, check_texts, check_top_k

log = logging.getLogger(__name__)

SERVICE_NAME = "emotion-classifier"
ENDPOINTS = ("/", "/health", "/ready", "/info", "/predict", "/metrics", "/docs", "/openapi.json")
ERROR_RESPONSES = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        400: "Body is not UTF-8 JSON or is nested too deeply; bad Content-Length",
        413: "Request body over SERVE_MAX_BODY_BYTES",
        415: "Content-Type is not application/json",
        422: "Invalid input (the detail names the problem)",
        503: "Model not ready",
    }.items()
}


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


def create_app(settings: ServeSettings | None = None, *, tracking_uri: str | None = None) -> FastAPI:
    """Build the app. `settings` defaults to the SERVE_* environment; MLFLOW_TRACKING_URI is read here."""
    settings = settings or ServeSettings()
    metrics = ServingMetrics()
    runtime = ModelRuntime(settings=settings, metrics=metrics, tracking_uri=tracking_uri or _tracking_uri())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        loading = asyncio.create_task(runtime.load(), name="model-load")
        try:
            yield
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
    app.state.metrics = metrics

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _format_validation_errors(exc)

    @app.exception_handler(RequestProblem)
    async def on_request_problem(request: Request, exc: RequestProblem) -> JSONResponse:
        return JSONResponse(status_code=exc.status_code, content={"detail": exc.message})

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = str(exc.detail)
        if exc.status_code == 400 and detail == "There was an error parsing the body":
            detail = "request body could not be parsed as JSON (not UTF-8, or nested too deeply)"
        return JSONResponse(status_code=exc.status_code, content={"detail": detail}, headers=exc.headers)

    @app.get("/", response_model=ServiceInfo)
    async def root() -> ServiceInfo:
        return ServiceInfo(
            service=SERVICE_NAME,
            version=app.version,
            ready=runtime.ready,
            model_uri=settings.model_uri,
            docs="/docs",
            endpoints=list(ENDPOINTS),
        )

    @app.get("/health", response_model=Health)
    async def health() -> Health:
        """Liveness: the process answers (the model may still be loading)."""
        return Health(status="ok")

    @app.get("/ready", response_model=Readiness, responses={503: {"model": Readiness}})
    async def ready() -> JSONResponse:
        """Readiness: 200 only once the model is loaded and a warm-up inference succeeded."""
        version = runtime.resolved.model_version if runtime.resolved else None
        body = Readiness(
            ready=runtime.ready, status=runtime.status, reason=runtime.reason, model_version=version
        )
        return JSONResponse(status_code=200 if runtime.ready else 503, content=body.model_dump())

    @app.get("/info", response_model=ModelInfo, responses={503: ERROR_RESPONSES[503]})
    async def info() -> dict:
        _require_ready(runtime)
        return runtime.info

    @app.post("/predict", response_model=PredictResponse, responses=ERROR_RESPONSES)
    async def predict(body: PredictRequest) -> JSONResponse:
        batcher = _require_ready(runtime)
        checked = check_texts(body.texts, settings)
        check_top_k(body.top_k, len(runtime.labels))
        try:
            probs = await batcher.predict(checked.texts)
        except BatcherClosed as exc:
            raise RequestProblem(503, f"model not ready: {exc}") from None
        predictions = build_predictions(
            checked.texts,
            probs,
            runtime.labels,
            top_k=body.top_k,
            all_scores=body.all_scores,
            truncated=checked.truncated,
        )
        resolved = runtime.resolved
        return JSONResponse(
            {
                "predictions": predictions,
                "model_uri": resolved.model_uri,
                "model_version": resolved.model_version,
            }
        )

    @app.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
    async def prometheus_metrics() -> Response:
        return Response(content=metrics.render(), media_type=metrics.content_type)

    app.add_middleware(BodyGuard, max_body_bytes=settings.max_body_bytes, json_paths=["/predict"])
    app.add_middleware(RequestMetrics, metrics=metrics, endpoints=ENDPOINTS)
    return app


def _require_ready(runtime: ModelRuntime):
    if not runtime.ready or runtime.batcher is None:
        raise RequestProblem(503, f"model not ready: {runtime.reason}")
    return runtime.batcher
