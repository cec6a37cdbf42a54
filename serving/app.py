"""The FastAPI inference server: `create_app(settings)` builds it; importing this module does nothing.

The model is loaded by the lifespan in the background, so `/health` answers at once while `/ready`
says 503 (with the reason) until the model is loaded and warmed up, or for good if it failed.

Three protocols share one batcher: the project's `/predict`, MLflow's scoring server
(`/invocations`, `/ping`, `/version`; `serving.mlflow_protocol`) and the Open Inference Protocol v2
of KServe and Triton (`/v2/...`; `serving.v2`). Overload answers 503 + Retry-After in each.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving import mlflow_protocol, v2
from serving.batching import BatcherClosed, ClientGone, DeadlineExceeded, Overloaded
from serving.door import ARRIVED_SCOPE_KEY, CLIENT_GONE_SCOPE_KEY, DOOR_STATE_KEY, OverloadDoor
from serving.metrics import ServingMetrics
from serving.middleware import AdmissionGuard, BodyGuard, RequestMetrics
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
V2_MODEL = f"/v2/models/{SERVICE_NAME}"
ENDPOINTS = (
    "/",
    "/health",
    "/ready",
    "/info",
    "/predict",
    "/metrics",
    "/docs",
    "/openapi.json",
    "/invocations",
    "/ping",
    "/version",
    "/v2",
    "/v2/health/live",
    "/v2/health/ready",
    V2_MODEL,
    f"{V2_MODEL}/ready",
    f"{V2_MODEL}/infer",
)
# status recorded for a request whose client disconnected before its batch (nginx's convention)
CLIENT_CLOSED_REQUEST = 499
# the scoring endpoints, refused while the worker is full (serving.door, AdmissionGuard)
SCORING_PATHS = ("/predict", "/invocations")
SCORING_PREFIXES = ("/v2/models/",)
ERROR_RESPONSES = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        400: "Body is not UTF-8 JSON or is nested too deeply; bad Content-Length",
        413: "Request body over SERVE_MAX_BODY_BYTES",
        415: "Content-Type is not application/json",
        422: "Invalid input (the detail names the problem)",
        503: "Model not ready, or overloaded (with Retry-After)",
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
    app.state.metrics = metrics

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
    async def predict(body: PredictRequest, request: Request) -> JSONResponse:
        batcher = _require_ready(runtime)
        checked = check_texts(body.texts, settings)
        check_top_k(body.top_k, len(runtime.labels))
        probs = await _classify(batcher, checked.texts, request)
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

    _add_mlflow_routes(app, runtime, settings)
    _add_v2_routes(app, runtime, settings)
    app.add_middleware(BodyGuard, max_body_bytes=settings.max_body_bytes, json_paths=["/predict"])
    app.add_middleware(AdmissionGuard, door=door)
    app.add_middleware(RequestMetrics, metrics=metrics, endpoints=ENDPOINTS)
    return app


def _require_ready(runtime: ModelRuntime):
    if not runtime.ready or runtime.batcher is None:
        raise RequestProblem(503, f"model not ready: {runtime.reason}")
    return runtime.batcher


async def _classify(batcher, texts: list[str], request: Request) -> np.ndarray:
    """Probabilities from the batcher; not running, overload and a missed deadline become 503.

    The deadline counts from the request's arrival (the scope's timestamp, serving.door). A request
    whose client disconnected while it waited is dropped by the batcher (ClientGone, answered 499 to
    nobody, counted in the request metrics) when the server says how to tell.
    """
    scope = request.scope
    try:
        return await batcher.predict(texts, scope.get(CLIENT_GONE_SCOPE_KEY), scope.get(ARRIVED_SCOPE_KEY))
    except BatcherClosed as exc:
        raise RequestProblem(503, f"model not ready: {exc}") from None
    except Overloaded as exc:
        raise RequestProblem(503, str(exc), {"Retry-After": f"{exc.retry_after_s:g}"}) from None
    except DeadlineExceeded as exc:
        retry = f"{batcher.retry_after_s:g}"
        raise RequestProblem(503, f"server overloaded: {exc}; retry later", {"Retry-After": retry}) from None


async def _classify_checked(
    runtime: ModelRuntime, settings: ServeSettings, texts: list[str], request: Request
) -> np.ndarray:
    batcher = _require_ready(runtime)
    return await _classify(batcher, check_texts(texts, settings).texts, request)


def _add_mlflow_routes(app: FastAPI, runtime: ModelRuntime, settings: ServeSettings) -> None:
    """MLflow's scoring-server protocol; `/health` stays this server's liveness (200 while loading)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        mlflow_version = version("mlflow")
    except PackageNotFoundError:  # pragma: no cover - mlflow is a dependency
        mlflow_version = "unknown"

    @app.get("/ping", response_class=Response, tags=["mlflow"], responses=_documented(503))
    async def ping() -> Response:
        """MLflow readiness: 200 once the model is loaded and warmed up, 503 before."""
        return Response(
            content="\n", status_code=200 if runtime.ready else 503, media_type="application/json"
        )

    @app.get("/version", response_class=Response, tags=["mlflow"])
    async def mlflow_server_version() -> Response:
        return Response(content=mlflow_version, media_type="application/json")

    @app.post("/invocations", tags=["mlflow"], responses=_documented(400, 415, 503))
    async def invocations(request: Request) -> Response:
        """MLflow scoring: dataframe_split / dataframe_records / instances / inputs (JSON) or CSV."""
        try:
            texts = mlflow_protocol.parse_invocation(
                await request.body(), request.headers.get("content-type")
            )
            probs = await _classify_checked(runtime, settings, texts, request)
        except mlflow_protocol.MlflowInputError as exc:
            if exc.status_code == 415:
                return Response(exc.message, status_code=415, media_type="text/plain")
            return JSONResponse(exc.body(), status_code=400)
        except RequestProblem as exc:
            if exc.status_code >= 500:
                return JSONResponse(
                    {"error_code": "TEMPORARILY_UNAVAILABLE", "message": exc.message},
                    status_code=exc.status_code,
                    headers=exc.headers,
                )
            return JSONResponse(mlflow_protocol.MlflowInputError(exc.message).body(), status_code=400)
        return JSONResponse(mlflow_protocol.predictions(probs, runtime.labels))


def _documented(*codes: int, binary_ok: bool = False) -> dict:
    """OpenAPI `responses` for the protocol routes (their error bodies are the protocols' own)."""
    texts = {
        400: "Bad input",
        404: "Unknown model",
        415: "Unsupported content type",
        503: "Not ready or overloaded",
    }
    out: dict = {code: {"description": texts[code], "content": {"application/json": {}}} for code in codes}
    if 415 in codes:
        out[415]["content"] = {"text/plain": {}}
    if binary_ok:
        out[200] = {"content": {"application/json": {}, "application/octet-stream": {}}}
    return out


def _add_v2_routes(app: FastAPI, runtime: ModelRuntime, settings: ServeSettings) -> None:
    """Open Inference Protocol v2 (KServe / Triton REST) for the model named SERVICE_NAME."""

    def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    def unknown(name: str) -> JSONResponse:
        return error(404, f"model {name!r} is not served here; the model is {SERVICE_NAME!r}")

    @app.get("/v2", tags=["v2"])
    async def v2_server() -> dict:
        return {"name": SERVICE_NAME, "version": app.version, "extensions": v2.EXTENSIONS}

    @app.get("/v2/health/live", tags=["v2"])
    async def v2_live() -> dict:
        return {"live": True}

    @app.get("/v2/health/ready", tags=["v2"], responses=_documented(503))
    async def v2_ready() -> JSONResponse:
        return JSONResponse({"ready": runtime.ready}, status_code=200 if runtime.ready else 503)

    @app.get("/v2/models/{name}", tags=["v2"], responses=_documented(404, 503))
    @app.get("/v2/models/{name}/versions/{model_version}", tags=["v2"], include_in_schema=False)
    async def v2_model(name: str, model_version: str | None = None) -> JSONResponse:
        if name != SERVICE_NAME:
            return unknown(name)
        if not runtime.ready:
            return error(503, f"model not ready: {runtime.reason}")
        meta = v2.model_metadata(
            name, [runtime.resolved.model_version], len(runtime.labels), runtime.backend_kind
        )
        return JSONResponse(meta)

    @app.get("/v2/models/{name}/ready", tags=["v2"], responses=_documented(404, 503))
    @app.get("/v2/models/{name}/versions/{model_version}/ready", tags=["v2"], include_in_schema=False)
    async def v2_model_ready(name: str, model_version: str | None = None) -> JSONResponse:
        if name != SERVICE_NAME:
            return unknown(name)
        return JSONResponse({"name": name, "ready": runtime.ready}, status_code=200 if runtime.ready else 503)

    @app.post("/v2/models/{name}/infer", tags=["v2"], responses=_documented(400, 404, 503, binary_ok=True))
    @app.post("/v2/models/{name}/versions/{model_version}/infer", tags=["v2"], include_in_schema=False)
    async def v2_infer(name: str, request: Request, model_version: str | None = None) -> Response:
        """Infer: one BYTES input of texts; outputs `label` and `probabilities` (JSON or binary)."""
        if name != SERVICE_NAME:
            return unknown(name)
        try:
            req = v2.parse_infer_request(await request.body(), request.headers.get(v2.HEADER_LENGTH))
            probs = await _classify_checked(runtime, settings, req.texts, request)
        except v2.V2Error as exc:
            return error(exc.status_code, exc.message)
        except RequestProblem as exc:
            return error(400 if exc.status_code < 500 else exc.status_code, exc.message, exc.headers)
        body, headers = v2.encode_infer_response(
            req, SERVICE_NAME, runtime.resolved.model_version, probs, runtime.labels
        )
        return Response(content=body, headers=headers)
