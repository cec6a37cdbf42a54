"""Refusing at the door: an overloaded worker answers 503 + Retry-After from Uvicorn's HTTP protocol.

Clients that ignore Retry-After (load generators, naive retry loops) resend a refused request at
once, so under a flood most of what a worker does is refusing. Refused inside the ASGI app, every
refusal costs a task, the middleware stack, two socket writes and an access-log line (~0.2 ms of
event-loop CPU); thousands a second stretch every turn of the event loop, and the admitted requests,
which need several turns each (parse, enqueue, hand-offs to the tokenize and inference threads,
respond), wait behind them. `DoorHttpToolsProtocol` decides when a request's headers are parsed:
if the worker's batcher admits nothing more, the request's body is skipped as it arrives and one
pre-formatted 503 is written with a single write, no task, no app. Everything else goes to the app
unchanged (where `serving.middleware.AdmissionGuard` applies the same rule for other ASGI servers).

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

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

log = logging.getLogger(__name__)

DOOR_STATE_KEY = "serving.door"
# a zero-argument callable in each request's ASGI scope: True once the client has disconnected
CLIENT_GONE_SCOPE_KEY = "serving.client_gone"
# what `uvicorn.Config(http=...)` and the Gunicorn worker are given
HTTP_PROTOCOL = "serving.door:DoorHttpToolsProtocol"
SUMMARY_EVERY_S = 10.0


def overload_refusal(batcher) -> tuple[bytes, str]:
    """The body and Retry-After value of a 503 for overload, with the error fields of all three
    protocols (`detail`, `error`, `error_code` + `message`): the route is not resolved yet."""
    message = f"server is at capacity ({batcher.queued_texts} texts queued); retry later"
    body = json.dumps(
        {"detail": message, "error": message, "error_code": "TEMPORARILY_UNAVAILABLE", "message": message}
    ).encode()
    return body, f"{batcher.retry_after_s:g}"


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

    def refuses(self, method: bytes, path: bytes) -> bool:
        batcher = self.runtime.batcher
        return (
            batcher is not None
            and method == b"POST"
            and not batcher.admits(1)
            and (path in self.paths or path.startswith(self.prefixes))
        )

    def refusal(self, path: bytes, default_headers: list[tuple[bytes, bytes]], keep_alive: bool) -> bytes:
        """The whole HTTP response (status line, headers, body) for a request refused at the door."""
        batcher = self.runtime.batcher
        body, retry_after = overload_refusal(batcher)
        head = [STATUS_LINE[503]]
        for name, value in default_headers:
            head += [name, b": ", value, b"\r\n"]
        head.append(
            b"content-type: application/json\r\ncontent-length: %d\r\nretry-after: %s\r\n"
            % (len(body), retry_after.encode())
        )
        if not keep_alive:
            head.append(b"connection: close\r\n")
        head += [b"\r\n", body]
        self._count(path)
        return b"".join(head)

    def _count(self, path: bytes) -> None:
        metrics = self.runtime.metrics
        decoded = path.decode("latin-1")
        metrics.observe_shed("queue_full")
        metrics.observe_request(decoded if decoded in self.endpoints else "other", "POST", 503, 0.0)
        self._refused_since_summary += 1
        now = time.monotonic()
        if now - self._summary_at >= SUMMARY_EVERY_S:
            log.warning(
                "overloaded: refused %d requests at the door (503 + Retry-After) in the last %.0f s",
                self._refused_since_summary,
                now - self._summary_at,
            )
            self._refused_since_summary, self._summary_at = 0, now


class DoorHttpToolsProtocol(HttpToolsProtocol):
    """Uvicorn's httptools protocol, refusing scoring requests at the door while the worker is full.

    Every request it hands to the app carries `CLIENT_GONE_SCOPE_KEY` in its scope, so a request
    whose client disconnected while it waited is dropped from the queue, not computed.

    Only a request that starts a fresh exchange is refused here: not one pipelined behind a request
    still being answered (its answer would overtake the earlier one), and not one that waits for
    `100 Continue` (its client may never send the body the parser expects); those go to the app.
    """

    _refusal: bytes | None = None  # the 503 to write once the refused request's body has gone by

    def on_headers_complete(self) -> None:
        door: OverloadDoor | None = self.app_state.get(DOOR_STATE_KEY)
        if (
            door is not None
            and not self.expect_100_continue
            and (self.cycle is None or self.cycle.response_complete)
            and not self.pipeline
            and not self.parser.should_upgrade()
        ):
            path = httptools.parse_url(self.url).path
            if door.refuses(self.parser.get_method(), path):
                keep_alive = self.parser.should_keep_alive()
                self._refusal = door.refusal(path, self.server_state.default_headers, keep_alive)
                self._keep_alive_after_refusal = keep_alive
                return
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.scope is self.scope:  # this request's cycle (not an upgrade)
            # the batcher drops a queued request whose client went away instead of computing it
            self.scope[CLIENT_GONE_SCOPE_KEY] = lambda: cycle.disconnected

    def on_body(self, body: bytes) -> None:
        if self._refusal is None:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refusal is None:
            super().on_message_complete()
            return
        response, self._refusal = self._refusal, None
        self.transport.write(response)
        self.server_state.total_requests += 1
        door: OverloadDoor | None = self.app_state.get(DOOR_STATE_KEY)
        pause_s = door.refused_pause_s if door is not None else 0.0
        if not self._keep_alive_after_refusal:
            self.transport.close()
        elif pause_s > 0:
            # the client was told to come back after Retry-After: its next request on this connection
            # is not read before `pause_s` (it waits in the socket; nothing is lost)
            self.flow.pause_reading()
            self.loop.call_later(pause_s, self._resume_after_refusal)
        else:
            self._arm_keep_alive()

    def _resume_after_refusal(self) -> None:
        if not self.transport.is_closing():
            self.flow.resume_reading()
            self._arm_keep_alive()

    def _arm_keep_alive(self) -> None:
        if not self.transport.is_closing():
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )
