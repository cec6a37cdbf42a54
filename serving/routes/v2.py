"""Open Inference Protocol v2 (KServe / Triton REST) for the model named SERVICE_NAME."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from serving import v2
from serving.routes.deps import SERVICE_NAME, Runtime, Settings, classify_checked, documented
from serving.validation import RequestProblem

router = APIRouter(tags=["v2"])


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _unknown(name: str) -> JSONResponse:
    return _error(404, f"model {name!r} is not served here; the model is {SERVICE_NAME!r}")


@router.get("/v2")
async def v2_server(request: Request) -> dict:
    return {"name": SERVICE_NAME, "version": request.app.version, "extensions": v2.EXTENSIONS}


@router.get("/v2/health/live")
async def v2_live() -> dict:
    return {"live": True}


@router.get("/v2/health/ready", responses=documented(503))
async def v2_ready(runtime: Runtime) -> JSONResponse:
    return JSONResponse({"ready": runtime.ready}, status_code=200 if runtime.ready else 503)


@router.get("/v2/models/{name}", responses=documented(404, 503))
@router.get("/v2/models/{name}/versions/{model_version}", include_in_schema=False)
async def v2_model(name: str, runtime: Runtime, model_version: str | None = None) -> JSONResponse:
    if name != SERVICE_NAME:
        return _unknown(name)
    if not runtime.ready:
        return _error(503, f"model not ready: {runtime.reason}")
    meta = v2.model_metadata(
        name, [runtime.resolved.model_version], len(runtime.labels), runtime.backend_kind
    )
    return JSONResponse(meta)


@router.get("/v2/models/{name}/ready", responses=documented(404, 503))
@router.get("/v2/models/{name}/versions/{model_version}/ready", include_in_schema=False)
async def v2_model_ready(name: str, runtime: Runtime, model_version: str | None = None) -> JSONResponse:
    if name != SERVICE_NAME:
        return _unknown(name)
    return JSONResponse({"name": name, "ready": runtime.ready}, status_code=200 if runtime.ready else 503)


@router.post("/v2/models/{name}/infer", responses=documented(400, 404, 503, binary_ok=True))
@router.post("/v2/models/{name}/versions/{model_version}/infer", include_in_schema=False)
async def v2_infer(
    name: str, request: Request, runtime: Runtime, settings: Settings, model_version: str | None = None
) -> Response:
    """Infer: one BYTES input of texts; outputs `label` and `probabilities` (JSON or binary)."""
    if name != SERVICE_NAME:
        return _unknown(name)
    try:
        req = v2.parse_infer_request(await request.body(), request.headers.get(v2.HEADER_LENGTH))
        probs = await classify_checked(runtime, settings, req.texts, request)
    except v2.V2Error as exc:
        return _error(exc.status_code, exc.message)
    except RequestProblem as exc:
        return _error(400 if exc.status_code < 500 else exc.status_code, exc.message, exc.headers)
    body, headers = v2.encode_infer_response(
        req, SERVICE_NAME, runtime.resolved.model_version, probs, runtime.labels
    )
    return Response(content=body, headers=headers)
