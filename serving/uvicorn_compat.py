"""The one place that relies on Uvicorn's internals, checked against the installed version at import.

Uvicorn has no public hook between "a request's headers are parsed" and "a task runs the app", nor
a timestamp of a request's arrival, nor a pause between "stop accepting" and "close idle
connections" on shutdown. Three things the server needs live there, measured against the public
alternatives (docs/benchmarks.md):

- `DoorHttpToolsProtocol`: refuses a scoring request at the door (serving.door) with one write, no
  task and no app, while the worker is full; an ASGI-level refusal costs ~0.2 ms of event-loop CPU
  each and, under a flood of clients that resend at once, pushed the admitted p99 from ~360-460 ms
  to 724 ms at 256 clients. It also stamps each request with its arrival time (the deadline counts
  from there) and a client-gone check.
- `DrainingServer`: waits `DRAIN_SECONDS` between "stop accepting" and "close idle connections", so
  a request whose bytes were in flight during a rollout is answered instead of reset.

Both subclass Uvicorn classes and use attributes Uvicorn does not document (the parser, the cycle,
the flow control, `servers`), so this module refuses to import on a Uvicorn version it was not
tested with: the server then fails to start, naming the version, instead of misbehaving under load.
To allow a new version, run `tests/serving/test_door.py`, `tests/serving/test_uvicorn_compat.py` and
the deploy tests against it, then add it to `TESTED_UVICORN_VERSIONS`.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import socket

import httptools

TESTED_UVICORN_VERSIONS = frozenset({"0.54.0"})
DRAIN_SECONDS = 1.0


class UntestedUvicorn(RuntimeError):
    """The installed Uvicorn is not one this module was tested with."""


def check_uvicorn_version(installed: str) -> None:
    if installed not in TESTED_UVICORN_VERSIONS:
        raise UntestedUvicorn(
            f"serving.uvicorn_compat relies on Uvicorn internals tested with uvicorn "
            f"{', '.join(sorted(TESTED_UVICORN_VERSIONS))}; uvicorn {installed} is installed. Install a "
            "tested version (pyproject.toml pins it) or test this one and add it to TESTED_UVICORN_VERSIONS."
        )


check_uvicorn_version(importlib.metadata.version("uvicorn"))

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol  # noqa: E402 (after the check)
from uvicorn.server import Server  # noqa: E402

from serving.door import ARRIVED_SCOPE_KEY, CLIENT_GONE_SCOPE_KEY, DOOR_STATE_KEY, OverloadDoor  # noqa: E402


class DoorHttpToolsProtocol(HttpToolsProtocol):
    """Uvicorn's httptools protocol, refusing scoring requests at the door while the worker is full.

    Every request it hands to the app carries its arrival time (`ARRIVED_SCOPE_KEY`, when its first
    bytes were parsed) and `CLIENT_GONE_SCOPE_KEY` in its scope, so its deadline counts from its
    arrival and a request whose client disconnected while it waited is dropped, not computed.

    Only a request that starts a fresh exchange is refused here: not one pipelined behind a request
    still being answered (its answer would overtake the earlier one), and not one that waits for
    `100 Continue` (its client may never send the body the parser expects); those go to the app.
    """

    _refusal: bytes | None = None  # the 503 to write once the refused request's body has gone by
    _next_refusal_at = 0.0  # loop time before which this connection is not refused again (the pause)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope[ARRIVED_SCOPE_KEY] = self.loop.time()

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
            age_s = self.loop.time() - self.scope[ARRIVED_SCOPE_KEY]
            if door.refuses(self.parser.get_method(), path, age_s):
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
        wait_s = self._next_refusal_at - self.loop.time()
        if wait_s > 0:
            # this connection was refused less than the pause ago: a client that resends at once,
            # ignoring Retry-After, gets its next refusal only when the pause is over (the request was
            # read and timed at its arrival all the same, and one the worker admits is not held)
            self.loop.call_later(wait_s, self._write_refusal, response, self._keep_alive_after_refusal)
        else:
            self._write_refusal(response, self._keep_alive_after_refusal)

    def _write_refusal(self, response: bytes, keep_alive: bool) -> None:
        if self.transport.is_closing():
            return
        self.transport.write(response)
        self.server_state.total_requests += 1
        door: OverloadDoor | None = self.app_state.get(DOOR_STATE_KEY)
        self._next_refusal_at = self.loop.time() + (door.refused_pause_s if door is not None else 0.0)
        if not keep_alive:
            self.transport.close()
        else:
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )


class DrainingServer(Server):
    """On SIGTERM (a rollout's old workers) Uvicorn stops accepting and at once closes every connection
    that has no request in progress; one it accepted a moment earlier, whose request bytes are still in
    flight, is then reset. This waits `DRAIN_SECONDS` in between (the other workers keep accepting
    from the shared socket meanwhile)."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()  # stop accepting; Server.shutdown closes them again (a no-op)
        await asyncio.sleep(DRAIN_SECONDS)
        await super().shutdown(sockets)
