"""A real `mlflow server` on 127.0.0.1 for integration tests, started and stopped by pytest.

Use the `mlflow_server` fixture (load it with `from tests.mlflow_server import mlflow_server  # noqa`
in a conftest). By default it runs a SQLite backend and proxies artifacts (`--serve-artifacts`) to
a local folder, both in a temp dir. Other stores are chosen with indirect parametrisation:

    @pytest.mark.parametrize(
        "mlflow_server",
        [{"artifacts_destination": "s3://bucket/art", "env": {"MLFLOW_S3_ENDPOINT_URL": url}}],
        indirect=True,
    )

The keys are the keyword arguments of `MlflowServerOptions`. For a custom fixture (e.g. one
that first starts an S3 stand-in), call the `running_mlflow_server(...)` context manager directly.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from shared.processes import free_port, terminate_group
from tests.http_wait import log_tail, wait_http_ok

HOST = "127.0.0.1"


@dataclass(frozen=True)
class MlflowServerOptions:
    """How to run the server; paths default to folders inside the temp dir given at start.

    - `backend_store_uri`: where runs and the registry live (default SQLite in the temp dir).
    - `serve_artifacts`: proxy artifacts through the server (clients need no storage credentials);
      they land in `artifacts_destination` (default a local folder; e.g. `s3://bucket/path`).
    - `default_artifact_root`: with `serve_artifacts=False`, the plain artifact root clients
      write to themselves (default a local folder).
    - `env`: extra environment for the server process (e.g. `MLFLOW_S3_ENDPOINT_URL`, AWS keys).
    """

    backend_store_uri: str | None = None
    serve_artifacts: bool = True
    artifacts_destination: str | None = None
    default_artifact_root: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    workers: int = 1
    startup_timeout_s: float = 120.0


@dataclass(frozen=True)
class MlflowServer:
    """A running server: point clients at `url` (`MLFLOW_TRACKING_URI`)."""

    url: str
    port: int
    backend_store_uri: str
    artifact_location: str
    log_path: Path
    pid: int

    def log_tail(self, chars: int = 4000) -> str:
        return log_tail(self.log_path, chars)


def _server_command(options: MlflowServerOptions, tmp_dir: Path, port: int) -> tuple[list[str], str, str]:
    backend = options.backend_store_uri or f"sqlite:///{tmp_dir / 'mlflow.db'}"
    cmd = [
        sys.executable, "-m", "mlflow", "server",
        "--host", HOST, "--port", str(port),
        "--workers", str(options.workers),
        "--backend-store-uri", backend,
    ]  # fmt: skip
    if options.serve_artifacts:
        artifacts = options.artifacts_destination or str(tmp_dir / "mlartifacts")
        cmd += ["--serve-artifacts", "--artifacts-destination", artifacts]
    else:
        artifacts = options.default_artifact_root or str(tmp_dir / "artifacts")
        cmd += ["--no-serve-artifacts", "--default-artifact-root", artifacts]
    return cmd, backend, artifacts


def _stop(proc: subprocess.Popen) -> None:
    """Stop the server and the workers it started (its own process group)."""
    if proc.poll() is not None:
        return
    terminate_group(proc.pid, grace=10, proc=proc)
    proc.wait(timeout=10)


@contextmanager
def running_mlflow_server(
    tmp_dir: Path, options: MlflowServerOptions | None = None
) -> Iterator[MlflowServer]:
    """Start `mlflow server` on a free port of 127.0.0.1, wait for /health, stop it on exit."""
    options = options or MlflowServerOptions()
    tmp_dir = Path(tmp_dir)
    tmp_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cmd, backend, artifacts = _server_command(options, tmp_dir, port)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
    env.update(options.env)
    server_log = tmp_dir / "mlflow-server.log"
    url = f"http://{HOST}:{port}"
    with open(server_log, "wb") as log_fh:
        proc = subprocess.Popen(
            cmd, cwd=tmp_dir, env=env, stdout=log_fh, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_http_ok(f"{url}/health", proc, server_log, options.startup_timeout_s)
        yield MlflowServer(
            url=url,
            port=port,
            backend_store_uri=backend,
            artifact_location=artifacts,
            log_path=server_log,
            pid=proc.pid,
        )
    finally:
        _stop(proc)


@pytest.fixture(scope="session")
def mlflow_server(request, tmp_path_factory) -> Iterator[MlflowServer]:
    """A real MLflow tracking server for the session (one per distinct parametrisation)."""
    params = getattr(request, "param", None) or {}
    options = params if isinstance(params, MlflowServerOptions) else MlflowServerOptions(**params)
    with running_mlflow_server(tmp_path_factory.mktemp("mlflow-server"), options) as server:
        yield server
