"""The failure policy, the same for every step: bad input exits 2, a transient fault 75, a bug 1.

Transient faults are produced for real: a closed port (connection refused) and a loopback server
that answers 503 to everything (an overloaded or restarting service).
"""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.errors import EXIT_BAD_INPUT, EXIT_BUG, EXIT_TRANSIENT, StepError, TransientError
from shared.failures import exit_code_for
from shared.processes import free_port
from steps.deploy.cli import main as deploy_main
from steps.dvc_fetch.cli import main as fetch_main
from steps.hpo.cli import main as hpo_main
from steps.register.cli import main as register_main
from steps.tokenize.cli import main as tokenize_main
from tests.cli_helpers import run_main

ROOT = Path(__file__).resolve().parents[1]


class _Unavailable(http.server.BaseHTTPRequestHandler):
    def _answer(self) -> None:
        body = b"service unavailable"
        self.send_response(503)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Retry-After", "1")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_HEAD = do_PUT = do_PATCH = _answer

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def unavailable_url() -> Iterator[str]:
    """A loopback HTTP server that answers 503 to every request."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Unavailable)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture()
def no_mlflow_retries(monkeypatch):
    """MLflow's client retries 5xx for minutes by default; the workflow's retry is the one that counts."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")


def test_exit_codes_of_typical_exceptions():
    import botocore.exceptions
    import requests
    from kubernetes.client.exceptions import ApiException
    from mlflow.exceptions import MlflowException

    throttled = botocore.exceptions.ClientError({"Error": {"Code": "SlowDown", "Message": "x"}}, "PutObject")
    denied = botocore.exceptions.ClientError({"Error": {"Code": "AccessDenied", "Message": "x"}}, "PutObject")
    wrapped = RuntimeError("search failed")
    wrapped.__cause__ = ConnectionResetError(104, "Connection reset by peer")
    cases = {
        EXIT_BAD_INPUT: [StepError("--limit: must be >= 0")],
        EXIT_TRANSIENT: [
            TransientError("down"),
            ConnectionRefusedError(111, "Connection refused"),
            TimeoutError("timed out"),
            requests.ConnectionError("refused"),
            throttled,
            ApiException(status=503, reason="Service Unavailable"),
            ApiException(status=429, reason="Too Many Requests"),
            MlflowException("API request to endpoint /api/2.0/x failed with error code 503 != 200"),
            wrapped,
        ],
        EXIT_BUG: [
            ValueError("a bug"),
            KeyError("k"),
            denied,
            ApiException(status=403, reason="Forbidden"),
            MlflowException("RESOURCE_DOES_NOT_EXIST"),
        ],
    }
    for code, excs in cases.items():
        for exc in excs:
            assert exit_code_for(exc) == code, repr(exc)


@pytest.mark.parametrize(
    "main,argv,flag",
    [
        (tokenize_main, ["--dataset-dir", "d", "--output-dir", "o", "--max-length", "1"], "--max-length"),
        (fetch_main, ["--registry-url", "r", "--output-dir", "o", "--jobs", "0"], "--jobs"),
        (hpo_main, ["--tokenized-dir", "t", "--num-samples", "0"], "--num-samples"),
        (hpo_main, ["--tokenized-dir", "t", "--search-alg", "grid"], "--search-alg"),
        (register_main, ["--workflow-uid", "u", "--dataset-dir", "d", "--metric", "loss"], "--metric"),
        (deploy_main, ["rollout", "--model-uri", "m", "--serving-port", "0"], "--serving-port"),
        (deploy_main, ["rollout", "--model-uri", "m", "--deploy-target", "mars"], "--deploy-target"),
        (tokenize_main, ["--dataset-dir", "d", "--output-dir", "o", "--no-such-flag", "1"], "--no-such-flag"),
        (tokenize_main, ["--output-dir", "o"], "--dataset-dir"),
    ],
)
def test_every_step_exits_2_on_bad_input_naming_the_flag(main, argv, flag, capsys, tmp_path):
    code, out = run_main(main, [*argv, "--result-dir", str(tmp_path / "r")], capsys)
    assert code == EXIT_BAD_INPUT, out
    assert flag in out and "Traceback" not in out
    assert not (tmp_path / "r").exists()


def test_a_missing_file_named_on_the_command_line_is_bad_input(capsys, tmp_path):
    argv = ["--dataset-dir", str(tmp_path / "nope"), "--output-dir", str(tmp_path / "o")]
    code, out = run_main(tokenize_main, argv, capsys)
    assert code == EXIT_BAD_INPUT and "nope" in out and "Traceback" not in out


def _kubeconfig(url: str, path: Path) -> Path:
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: k, cluster: {{server: '{url}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
    )
    return path


def _transient_cases(url: str, tmp_path: Path, monkeypatch) -> list[tuple[object, list[str]]]:
    dataset = tmp_path / "dataset"
    dataset.mkdir(exist_ok=True)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(url, tmp_path / "kubeconfig")))
    return [
        (register_main, ["--workflow-uid", "u", "--dataset-dir", str(dataset)]),
        (hpo_main, ["result", "--workflow-uid", "u"]),
        (fetch_main, ["--registry-url", f"{url}/data-registry.git", "--output-dir", str(tmp_path / "o")]),
        (
            deploy_main,
            ["rollout", "--model-uri", "models:/m/1", "--deploy-target", "kubernetes", "--image", "i:1"],
        ),
    ]


def test_a_closed_port_is_transient_for_every_service_step(capsys, tmp_path, monkeypatch, no_mlflow_retries):
    url = f"http://127.0.0.1:{free_port()}"
    for main, argv in _transient_cases(url, tmp_path, monkeypatch):
        code, out = run_main(main, [*argv, "--result-dir", str(tmp_path / "r")], capsys)
        assert code == EXIT_TRANSIENT, (argv, out)
        assert "transient failure" in out and "Traceback" not in out
        assert not (tmp_path / "r" / "result.json").exists()


def test_a_service_answering_503_is_transient_for_every_service_step(
    capsys, tmp_path, monkeypatch, unavailable_url, no_mlflow_retries
):
    for main, argv in _transient_cases(unavailable_url, tmp_path, monkeypatch):
        code, out = run_main(main, [*argv, "--result-dir", str(tmp_path / "r")], capsys)
        assert code == EXIT_TRANSIENT, (argv, out)
        assert not (tmp_path / "r" / "result.json").exists()


def test_the_module_entry_points_use_the_policy(tmp_path):
    """`python -m steps.tokenize ... --max-length 1` exits 2 (it used to exit 1 and be retried)."""
    argv = ["--dataset-dir", "d", "--output-dir", "o", "--max-length", "1"]
    proc = subprocess.run(
        [sys.executable, "-m", "steps.tokenize", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == EXIT_BAD_INPUT, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "--max-length" in proc.stderr
