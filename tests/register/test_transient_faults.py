"""Transient faults between the register step and a real `mlflow server`, retried as the runner does.

A loopback proxy in front of the server refuses the first connection outright, and answers 503
to the first "create model version" and "set alias" calls *after* forwarding them (the server did
the work; the client cannot know). The step exits 75 (retried by the compiled template's retry
rule) until it gets through, and nothing is duplicated: one model version, one champion move.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import pytest

from pipelines.local_runner.process import Attempt
from pipelines.local_runner.retry import RetryStrategy
from shared.errors import EXIT_TRANSIENT

from .helpers import Trial, unique_model_name

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
FAIL_AFTER_FORWARDING = ("/model-versions/create", "/registered-models/alias")


class FaultyProxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: str, refuse_first: int) -> None:
        self.upstream = urlparse(upstream)
        self.refuse_left = refuse_first
        self.refused = 0
        self.failed_once: set[str] = set()
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def verify_request(self, request, client_address) -> bool:
        with self.lock:
            if self.refuse_left > 0:
                self.refuse_left -= 1
                self.refused += 1
                return False  # the connection is closed without an answer
        return True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FaultyProxy

    def log_message(self, *args) -> None:  # quiet
        pass

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        up = http.client.HTTPConnection(self.server.upstream.hostname, self.server.upstream.port, timeout=120)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        up.request(self.command, self.path, body=body, headers=headers)
        response = up.getresponse()
        data = response.read()
        hit = next((p for p in FAIL_AFTER_FORWARDING if self.path.split("?")[0].endswith(p)), None)
        with self.server.lock:
            fail = hit is not None and self.command == "POST" and hit not in self.server.failed_once
            if fail:
                self.server.failed_once.add(hit)
        if fail:  # the server did it; the client is told it failed
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward


def test_register_retried_through_transient_faults_duplicates_nothing(
    make_search, constant_model_dirs, register_settings, dataset_dir, mlflow_server, tmp_path
):
    from mlflow import MlflowClient

    from pipelines.emotion_hpo import build_workflow, to_manifest

    name = unique_model_name("faults")
    search = make_search([Trial(constant_model_dirs["joy"], 0.5)], workflow_uid="wf-faults")
    template = next(t for t in to_manifest(build_workflow())["spec"]["templates"] if t["name"] == "register")
    strategy = RetryStrategy.from_spec(template["retryStrategy"], "register")

    proxy = FaultyProxy(mlflow_server.url, refuse_first=1)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "MLFLOW_TRACKING_URI": proxy.url,
        "MLFLOW_EXPERIMENT_NAME": register_settings.mlflow_experiment_name,
        "ARGO_WORKFLOW_UID": "wf-faults",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",  # surface each fault to the step (the runner retries)
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
    }
    argv = [
        sys.executable, "-m", "steps.register", "--parent-run-id", search.parent_run_id,
        "--dataset-dir", str(dataset_dir), "--model-name", name, "--eval-limit", "200",
        "--result-dir", str(tmp_path / "result"),
    ]  # fmt: skip
    codes = []
    try:
        for attempt in range(1, 8):
            proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
            codes.append(proc.returncode)
            if proc.returncode == 0:
                break
            assert proc.returncode == EXIT_TRANSIENT, proc.stderr[-3000:]
            outcome = Attempt(proc.returncode, "Failed", f"exit code {proc.returncode}", "", 1.0)
            assert strategy.should_retry(outcome, attempt, 1.0)[0], "the template retries exit 75"
    finally:
        proxy.shutdown()
    # refused connection, 503 after creating the version, 503 after moving the alias: within the
    # template's retry limit
    assert codes == [EXIT_TRANSIENT, EXIT_TRANSIENT, EXIT_TRANSIENT, 0], codes
    assert proxy.refused == 1 and proxy.failed_once == set(FAIL_AFTER_FORWARDING)

    client = MlflowClient(mlflow_server.url)
    versions = client.search_model_versions(f"name = '{name}'")
    assert [v.version for v in versions] == ["1"], "one model version, however many attempts"
    assert client.get_model_version_by_alias(name, "champion").version == "1"
    result = json.loads((tmp_path / "result" / "result.json").read_text())
    assert result["model_uri"] == f"models:/{name}/1" and result["promoted"] is True
    child = client.get_run(search.child_run_ids[0])
    assert child.data.tags["registered_model_version"] == f"{name}/1"
    evaluations = [a.path for a in client.list_artifacts(child.info.run_id, "evaluation")]
    assert len(evaluations) == 1, evaluations  # evaluated and logged once
