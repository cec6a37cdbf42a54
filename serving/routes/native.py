"""The project's own API: service info, liveness, readiness, model lineage, `/predict`, metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from serving.routes.deps import ENDPOINTS, SERVICE_NAME, Runtime, Settings, classify, require_ready
from serving.runtime import build_predictions
from serving.schemas import (
    ErrorResponse,
    Health,
    ModelInfo,
    PredictRequest,
    PredictResponse,
    Readiness,
    ServiceInfo,
)
from serving.validation import check_texts, check_top_k

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

router = APIRouter()


@router.get("/", response_model=ServiceInfo)
async def root(request: Request, runtime: Runtime, settings: Settings) -> ServiceInfo:
    return ServiceInfo(
        service=SERVICE_NAME,
        version=request.app.version,
        ready=runtime.ready,
        model_uri=settings.model_uri,
        docs="/docs",
        endpoints=list(ENDPOINTS),
    )


@router.get("/health", response_model=Health)
async def health() -> Health:
    """Liveness: the process answers (the model may still be loading)."""
    return Health(status="ok")


@router.get("/ready", response_model=Readiness, responses={503: {"model": Readiness}})
async def ready(runtime: Runtime) -> JSONResponse:
    """Readiness: 200 only once the model is loaded and a warm-up inference succeeded."""
    version = runtime.resolved.model_version if runtime.resolved else None
    body = Readiness(ready=runtime.ready, status=runtime.status, reason=runtime.reason, model_version=version)
    return JSONResponse(status_code=200 if runtime.ready else 503, content=body.model_dump())


@router.get("/info", response_model=ModelInfo, responses={503: ERROR_RESPONSES[503]})
async def info(runtime: Runtime) -> dict:
    require_ready(runtime)
    return runtime.info


@router.post("/predict", response_model=PredictResponse, responses=ERROR_RESPONSES)
async def predict(
    body: PredictRequest, request: Request, runtime: Runtime, settings: Settings
) -> JSONResponse:
    require_ready(runtime)
    checked = check_texts(body.texts, settings)
    check_top_k(body.top_k, len(runtime.labels))
    probs = await classify(runtime, checked.texts, request)
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
        {"predictions": predictions, "model_uri": resolved.model_uri, "model_version": resolved.model_version}
    )


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def prometheus_metrics(runtime: Runtime) -> Response:
    metrics = runtime.metrics
    return Response(content=metrics.render(), media_type=metrics.content_type)
