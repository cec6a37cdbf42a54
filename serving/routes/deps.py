"""What the routes of every protocol share: the runtime and settings as dependencies, the readiness
gate, and scoring through the batcher (overload, a missed deadline and shutdown become 503)."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import Depends, Request

from serving.batching import BatcherClosed, DeadlineExceeded, MicroBatcher, Overloaded
from serving.door import ARRIVED_SCOPE_KEY, CLIENT_GONE_SCOPE_KEY
from serving.runtime import ModelRuntime
from serving.settings import ServeSettings
from serving.validation import RequestProblem, check_texts

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


async def _runtime(request: Request) -> ModelRuntime:
    return request.app.state.runtime


async def _settings(request: Request) -> ServeSettings:
    return request.app.state.settings


Runtime = Annotated[ModelRuntime, Depends(_runtime)]
Settings = Annotated[ServeSettings, Depends(_settings)]


def require_ready(runtime: ModelRuntime) -> MicroBatcher:
    """The batcher of a ready model, else 503 naming why it is not ready (the one readiness gate)."""
    if not runtime.ready or runtime.batcher is None:
        raise RequestProblem(503, f"model not ready: {runtime.reason}")
    return runtime.batcher


async def classify(runtime: ModelRuntime, texts: list[str], request: Request) -> np.ndarray:
    """Probabilities from the batcher of a ready model; not running, overload and a missed deadline
    become 503 (RequestProblem), with Retry-After for overload.

    The deadline counts from the request's arrival (the scope's timestamp, serving.door). A request
    whose client disconnected while it waited is dropped by the batcher (ClientGone, answered 499 to
    nobody, counted in the request metrics) when the server says how to tell.
    """
    batcher = require_ready(runtime)
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


async def classify_checked(
    runtime: ModelRuntime, settings: ServeSettings, texts: list[str], request: Request
) -> np.ndarray:
    """`classify` after the texts are validated against the serving limits."""
    require_ready(runtime)  # a model not ready is answered before any complaint about the texts
    return await classify(runtime, check_texts(texts, settings).texts, request)


def documented(*codes: int, binary_ok: bool = False) -> dict:
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
