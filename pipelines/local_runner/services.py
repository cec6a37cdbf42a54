"""Services a local run may need: an `mlflow server` on 127.0.0.1 for the run's duration.

With a sqlite tracking URI the steps talk to the store directly and nothing is started; with
`--mlflow-server` the runner serves that store over HTTP (like the cluster's tracking server),
passes the URL to the workflow and stops the server when the run ends. New experiments keep their
artifacts behind the server (`mlflow-artifacts:/`); one the store already had keeps its location.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

from pipelines.local_runner.errors import WorkflowError
from shared.processes import NotReady, free_port, terminate_group, wait_http


@contextmanager
def mlflow_server(
    backend_uri: str, artifacts_dir: Path, log_path: Path, port: int | None = None, timeout: float = 120.0
):
    """Run `mlflow server` for the block; yield its URL."""
    if not backend_uri.startswith("sqlite:"):
        raise WorkflowError(f"--mlflow-server needs a sqlite tracking URI, got {backend_uri!r}")
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    mlflow_cli = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or shutil.which("mlflow")
    argv = ([mlflow_cli] if mlflow_cli else [sys.executable, "-m", "mlflow"]) + [
        "server",
        "--backend-store-uri",
        backend_uri,
        # artifacts through the server (mlflow-artifacts:/), as the cluster's tracking server: a
        # container that pulls a model (the serving image) needs no mount of the host's folder
        "--serve-artifacts",
        "--artifacts-destination",
        str(artifacts_dir.resolve()),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=dict(os.environ),
        )
    try:
        try:
            wait_http(f"{url}/health", timeout, alive=lambda: proc.poll() is None, poll_s=0.5)
        except NotReady as exc:
            raise WorkflowError(f"mlflow server: {exc}; see {log_path}") from None
        yield url
    finally:
        terminate_group(proc.pid, proc=proc)
        proc.wait()
