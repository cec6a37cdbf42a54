"""The Gunicorn worker of the local server: Uvicorn's, serving with a short drain before it closes.

`uvicorn_worker.UvicornWorker` builds the Uvicorn `Config` from Gunicorn's settings (its public
`CONFIG_KWARGS` add ours: the HTTP protocol that refuses at the door). `run`, the method Gunicorn
calls in the worker, is replaced here so the worker serves with `serving.uvicorn_compat.DrainingServer`
(see there) and nothing of `uvicorn_worker`'s private methods is used: the loop comes from the
config's public `get_loop_factory`, SIGQUIT is routed to Gunicorn's `handle_exit` as `uvicorn_worker`
does, and a server that failed to start exits with Gunicorn's boot-error code.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from gunicorn.arbiter import Arbiter
from uvicorn_worker import UvicornWorker

from serving.door import HTTP_PROTOCOL
from serving.uvicorn_compat import DrainingServer  # refuses an untested Uvicorn (the server does not start)


class DrainingUvicornWorker(UvicornWorker):
    CONFIG_KWARGS = {"loop": "auto", "http": HTTP_PROTOCOL}

    def run(self) -> None:
        with asyncio.Runner(loop_factory=self.config.get_loop_factory()) as runner:
            runner.run(self.serve())

    async def serve(self) -> None:
        self.config.app = self.wsgi
        server = DrainingServer(config=self.config)
        # Gunicorn stops a worker with SIGQUIT too (e.g. when the arbiter dies); Uvicorn handles only
        # SIGINT and SIGTERM
        asyncio.get_running_loop().add_signal_handler(signal.SIGQUIT, self.handle_exit, signal.SIGQUIT, None)
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)
