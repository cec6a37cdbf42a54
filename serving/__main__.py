"""`python -m serving`: run the inference server under Uvicorn with the SERVE_* settings.

Flags override the environment for the common cases (`--model-uri`, `--host`, `--port`).
"""

from __future__ import annotations

import logging

import typer

from serving.settings import ServeSettings

cli = typer.Typer(add_completion=False, help=__doc__)


@cli.command()
def serve(
    model_uri: str | None = typer.Option(
        None, help="Model URI or local model dir (default: SERVE_MODEL_URI)."
    ),
    host: str | None = typer.Option(None, help="Bind address (default: SERVE_HOST, 127.0.0.1)."),
    port: int | None = typer.Option(None, help="Bind port (default: SERVE_PORT, 8000)."),
    backend: str | None = typer.Option(None, help="torch or onnx (default: SERVE_BACKEND)."),
) -> None:
    """Serve the emotion classifier until interrupted."""
    import os

    import uvicorn

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the server has its own inference thread

    from serving.app import create_app
    from serving.door import HTTP_PROTOCOL

    overrides = {
        k: v
        for k, v in {"model_uri": model_uri, "host": host, "port": port, "backend": backend}.items()
        if v is not None
    }
    settings = ServeSettings(**overrides)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        http=HTTP_PROTOCOL,  # overload refused in the HTTP protocol, before the app (serving.door)
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    cli()
