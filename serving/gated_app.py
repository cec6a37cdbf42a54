"""The serving app behind a startup health gate: a worker accepts traffic only once its model answers.

The serving app loads its model in the background, so `/health` answers at once and `/ready`
says 503 while loading. That suits Kubernetes (the readiness probe keeps a pod out of the
Service), but under Gunicorn a fresh worker shares the listening socket and would take requests
right away and answer 503. This wrapper holds the ASGI lifespan startup until the wrapped app's
own `/ready` answers 200 and a smoke prediction succeeds (both called in-process through
`httpx.ASGITransport`, i.e. the app's public HTTP contract); Uvicorn starts accepting
connections only after startup completes. Until then, new connections wait in the socket's
backlog and the old workers (during a rollover) finish what they hold. If the gate fails,
startup fails with the reason, and the worker exits without having answered anyone.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

import httpx

from shared.environment import ProductEnvironment

SMOKE_TEXTS = ["i feel wonderful today, everything went right"]  # the gate's (and deploy's) smoke test


log = logging.getLogger("uvicorn.error")  # the Uvicorn worker routes it to the server log

GATE_TIMEOUT_ENV = "EMOTION_SERVE_GATE_TIMEOUT_S"


class GateFailed(RuntimeError):
    pass


async def gate(app: Any, timeout_s: float, poll_s: float = 0.1) -> str:
    """Wait for `/ready` = 200, then smoke-predict; return the model version. Raise GateFailed."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gate") as client:
        deadline = time.monotonic() + timeout_s
        while True:
            response = await client.get("/ready")
            if response.status_code == 200:
                break
            body = _json(response)
            if body.get("status") == "failed":
                raise GateFailed(f"/ready: {body.get('reason') or response.text[:300]}")
            if time.monotonic() >= deadline:
                raise GateFailed(f"/ready did not answer 200 within {timeout_s:g}s: {response.text[:300]}")
            await asyncio.sleep(poll_s)
        response = await client.post("/predict", json={"texts": SMOKE_TEXTS})
        body = _json(response)
        predictions = body.get("predictions")
        if (
            response.status_code != 200
            or not isinstance(predictions, list)
            or len(predictions) != len(SMOKE_TEXTS)
        ):
            raise GateFailed(f"smoke prediction: HTTP {response.status_code}: {response.text[:300]}")
        return str(body.get("model_version"))


def _json(response: httpx.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


class HealthGatedApp:
    """ASGI middleware: lifespan startup completes only after `gate(app)` passes."""

    def __init__(self, app: Any, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def gated_send(message: dict) -> None:
            if message["type"] == "lifespan.startup.complete":
                try:
                    version = await gate(self.app, self.timeout_s)
                except GateFailed as exc:
                    log.error("health gate failed, this worker will not take traffic: %s", exc)
                    await send({"type": "lifespan.startup.failed", "message": f"health gate failed: {exc}"})
                    return
                log.info(
                    "health gate passed: model version %s answers; taking traffic (pid %s)",
                    version,
                    os.getpid(),
                )
            await send(message)

        await self.app(scope, receive, gated_send)


def create_app() -> HealthGatedApp:
    """Gunicorn's app factory: the serving app (settings from SERVE_*) behind the gate."""
    from serving.app import create_app as create_serving_app

    return HealthGatedApp(create_serving_app(), timeout_s=float(ProductEnvironment().serve_gate_timeout_s))
