"""Pure ASGI middleware: request metrics, and the body guard that runs before any parsing.

The body guard answers 413 when Content-Length is over the limit (without reading the body) or
when a streamed body grows past it, and 415 when a JSON endpoint gets another content type.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable

from serving.door import ARRIVED_SCOPE_KEY, OverloadDoor
from serving.metrics import ServingMetrics

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


async def send_error(send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _is_json(content_type: bytes) -> bool:
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))


class BodyGuard:
    """Cap request bodies at `max_body_bytes` and require JSON on `json_paths`."""

    def __init__(self, app, *, max_body_bytes: int, json_paths: Iterable[str]) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.json_paths = frozenset(json_paths)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit():
                await send_error(send, 400, "Content-Length header is not a number")
                return
            if int(length) > self.max_body_bytes:
                await send_error(send, 413, self._too_large(int(length)))
                return
        if scope["path"] in self.json_paths and not _is_json(headers.get(b"content-type", b"")):
            got = headers.get(b"content-type", b"").decode("latin-1") or "none"
            await send_error(send, 415, f"Content-Type must be application/json (got {got})")
            return
        chunks, total = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_body_bytes:
                await send_error(send, 413, self._too_large(total, streamed=True))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _too_large(self, size: int, streamed: bool = False) -> str:
        size_text = f"more than {size}" if streamed else str(size)
        limit = self.max_body_bytes
        return f"request body is {size_text} bytes; the limit is {limit} bytes (SERVE_MAX_BODY_BYTES)"


class RequestMetrics:
    """Count requests and time them, per known endpoint (unknown paths share the label `other`)."""

    def __init__(self, app, *, metrics: ServingMetrics, endpoints: Iterable[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.endpoints = frozenset(endpoints)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_record(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            path = scope["path"]
            endpoint = path if path in self.endpoints else "other"
            self.metrics.observe_request(endpoint, scope["method"], status, time.perf_counter() - started)


class AdmissionGuard:
    """Shed before the body is read: a scoring request the batcher would not finish within its deadline
    gets 503 + Retry-After without being parsed or routed. (The batcher checks again on enqueue, with
    the request's own texts.)

    The deadline counts from the request's arrival: the HTTP protocol's timestamp in the scope
    (`ARRIVED_SCOPE_KEY`), else now, which this guard records for the batcher. Under Uvicorn with
    `serving.uvicorn_compat.DoorHttpToolsProtocol` (how the server is run) such requests are refused
    earlier still, in the HTTP protocol; this guard covers requests that protocol hands on (pipelined,
    `Expect: 100-continue`) and other ASGI servers.
    """

    def __init__(self, app, *, door: OverloadDoor) -> None:
        self.app = app
        self.door = door

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        now = asyncio.get_running_loop().time()
        arrived = scope.setdefault(ARRIVED_SCOPE_KEY, now)
        if self.door.refuses(
            scope["method"].encode(), scope.get("raw_path") or scope["path"].encode(), now - arrived
        ):
            headers, body = self.door.refusal_parts()
            await send({"type": "http.response.start", "status": 503, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)
