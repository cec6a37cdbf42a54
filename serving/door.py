"""Refusing at the door: an overloaded worker answers 503 + Retry-After before the app sees the request.

Clients that ignore Retry-After (load generators, naive retry loops) resend a refused request at
once, so under a flood most of what a worker does is refusing. Refused inside the ASGI app, every
refusal costs a task, the middleware stack, two socket writes and an access-log line (~0.2 ms of
event-loop CPU); thousands a second stretch every turn of the event loop, and the admitted requests,
which need several turns each, wait behind them. `OverloadDoor` is the rule and the bookkeeping:
which requests a full worker refuses (scoring requests its batcher would not finish within their
deadline, counted from their arrival), the one pre-formatted 503 to write, the metrics. Uvicorn's
HTTP protocol applies it once a request's headers are parsed, with no task and no app
(`serving.uvicorn_compat`, the one module that depends on Uvicorn's internals, checked against the
installed version); `serving.middleware.AdmissionGuard` applies the same rule in the app for what
the protocol hands on and for other ASGI servers.

The app publishes its `OverloadDoor` in the ASGI lifespan state (`DOOR_STATE_KEY`); a protocol
without one (model still loading, another app) refuses nothing. Door refusals are counted in the
request and shed metrics like any other; instead of an access-log line each, the worker logs how
many it refused, at most every `SUMMARY_EVERY_S` seconds.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable

log = logging.getLogger(__name__)

DOOR_STATE_KEY = "serving.door"
# a zero-argument callable in each request's ASGI scope: True once the client has disconnected
CLIENT_GONE_SCOPE_KEY = "serving.client_gone"
# the event loop's time when the request's first bytes were parsed (set by the HTTP protocol; where
# the server does not, AdmissionGuard sets it when the app first sees the request)
ARRIVED_SCOPE_KEY = "serving.arrived"
# what `uvicorn.Config(http=...)` and the Gunicorn worker are given
HTTP_PROTOCOL = "serving.uvicorn_compat:DoorHttpToolsProtocol"
SERVICE_UNAVAILABLE = b"HTTP/1.1 503 Service Unavailable\r\n"
SUMMARY_EVERY_S = 10.0


class OverloadDoor:
    """Whether a request is refused before the app sees it, and the bookkeeping of each refusal."""

    def __init__(
        self,
        runtime,
        *,
        paths: Iterable[str],
        prefixes: Iterable[str] = (),
        endpoints: Iterable[str] = (),
        refused_pause_ms: float = 0.0,
    ) -> None:
        self.runtime = runtime
        self.paths = frozenset(path.encode() for path in paths)
        self.prefixes = tuple(prefix.encode() for prefix in prefixes)
        self.endpoints = frozenset(endpoints)  # the request metrics' endpoint labels; others: "other"
        self.refused_pause_s = refused_pause_ms / 1000.0
        self._refused_since_summary = 0
        self._summary_at = time.monotonic()

    def refuses(self, method: bytes, path: bytes, age_s: float = 0.0) -> bool:
        """A scoring request (body not read yet: one typical text assumed) that arrived `age_s` ago
        and that the batcher would not finish within its deadline."""
        batcher = self.runtime.batcher
        return (
            batcher is not None
            and method == b"POST"
            and not batcher.admits(age_s=age_s)
            and (path in self.paths or path.startswith(self.prefixes))
        )

    def refusal_parts(self) -> tuple[list[tuple[bytes, bytes]], bytes]:
        """The headers and body of the 503 for overload, with the error fields of all three protocols
        (`detail`, `error`, `error_code` + `message`): the route is not resolved yet. Counted as shed."""
        batcher = self.runtime.batcher
        message = f"server is at capacity ({batcher.queued_texts} texts queued); retry later"
        body = json.dumps(
            {"detail": message, "error": message, "error_code": "TEMPORARILY_UNAVAILABLE", "message": message}
        ).encode()
        self.runtime.metrics.observe_shed("queue_full")
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", f"{batcher.retry_after_s:g}".encode()),
        ]
        return headers, body

    def refusal(self, path: bytes, default_headers: list[tuple[bytes, bytes]], keep_alive: bool) -> bytes:
        """The whole HTTP response (status line, headers, body) for a request refused in the protocol,
        which no request middleware sees: the request metric is recorded here."""
        headers, body = self.refusal_parts()
        if not keep_alive:
            headers.append((b"connection", b"close"))
        head = [SERVICE_UNAVAILABLE]
        for name, value in [*default_headers, *headers]:
            head += [name, b": ", value, b"\r\n"]
        head += [b"\r\n", body]
        self._count(path)
        return b"".join(head)

    def _count(self, path: bytes) -> None:
        endpoint = path.decode("latin-1")
        endpoint = endpoint if endpoint in self.endpoints else "other"
        self.runtime.metrics.observe_request(endpoint, "POST", 503, 0.0)
        self._refused_since_summary += 1
        now = time.monotonic()
        if now - self._summary_at >= SUMMARY_EVERY_S:
            log.warning(
                "overloaded: refused %d requests at the door (503 + Retry-After) in the last %.0f s",
                self._refused_since_summary,
                now - self._summary_at,
            )
            self._refused_since_summary, self._summary_at = 0, now
