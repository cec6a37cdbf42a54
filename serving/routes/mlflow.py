"""MLflow's scoring-server protocol; `/health` stays this server's liveness (200 while loading)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from serving import mlflow_protocol
from serving.routes.deps import Runtime, Settings, classify_checked, documented
from serving.validation import RequestProblem

try:
    MLFLOW_VERSION = version("mlflow")
except PackageNotFoundError:  # pragma: no cover - mlflow is a dependency
    MLFLOW_VERSION = "unknown"

router = APIRouter(tags=["mlflow"])


@router.get("/ping", response_class=Response, responses=documented(503))
async def ping(runtime: Runtime) -> Response:
    """MLflow readiness: 200 once the model is loaded and warmed up, 503 before."""
    return Response(content="\n", status_code=200 if runtime.ready else 503, media_type="application/json")


@router.get("/version", response_class=Response)
async def mlflow_server_version() -> Response:
    return Response(content=MLFLOW_VERSION, media_type="application/json")


@router.post("/invocations", responses=documented(400, 415, 503))
async def invocations(request: Request, runtime: Runtime, settings: Settings) -> Response:
    """MLflow scoring: dataframe_split / dataframe_records / instances / inputs (JSON) or CSV."""
    try:
        texts = mlflow_protocol.parse_invocation(await request.body(), request.headers.get("content-type"))
        probs = await classify_checked(runtime, settings, texts, request)
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
