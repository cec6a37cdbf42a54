"""The Gunicorn worker of the local server: Uvicorn's, with a short drain before it closes.

On SIGTERM (a rollout's old workers) Uvicorn stops accepting and at once closes every
connection that has no request in progress. A connection it accepted a moment earlier, whose
request bytes are still in flight, is then reset: a dropped request during the rollout. Waiting
briefly between "stop accepting" and "close idle connections" lets such requests arrive and be
answered; the other workers keep accepting from the shared socket meanwhile.
"""

from __future__ import annotations

import asyncio
import socket
import sys

from gunicorn.arbiter import Arbiter
from uvicorn.server import Server
from uvicorn_worker import UvicornWorker

from serving.door import HTTP_PROTOCOL

DRAIN_SECONDS = 1.0


class DrainingServer(Server):
    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()  # stop accepting; Server.shutdown closes them again (a no-op)
        await asyncio.sleep(DRAIN_SECONDS)
        await super().shutdown(sockets)


class DrainingUvicornWorker(UvicornWorker):
    """`uvicorn_worker.UvicornWorker` serving with `DrainingServer` (its `_serve`, one class swapped)
    and the HTTP protocol that refuses at the door while the worker is full (serving.door)."""

    CONFIG_KWARGS = {"loop": "auto", "http": HTTP_PROTOCOL}

    async def _serve(self) -> None:
        self.config.app = self.wsgi
        server = DrainingServer(config=self.config)
        self._install_sigquit_handler()
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)
