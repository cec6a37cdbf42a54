"""The live display on a terminal, and `--mlflow-server` (slow: the server migrates its store first)."""

from __future__ import annotations

import io

import httpx
import pytest
from rich.console import Console

from pipelines.local_runner.app import RunRequest, execute_run
from pipelines.local_runner.services import free_port
from tests.runner.conftest import WORKFLOWS, write_workflow


def test_live_display_on_a_terminal(tmp_path, work_dir):
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=120)
    request = RunRequest(
        workflow=WORKFLOWS / "diamond.yaml",
        local_dir=tmp_path / ".local",
        params=[f"marker-dir={work_dir}", "sleep=0"],
    )
    assert execute_run(request, console) == 0
    text = buffer.getvalue()
    assert "\x1b[" in text  # drawn in place with terminal control codes
    for task in ("a", "b", "c", "d"):
        assert task in text
    assert "succeeded" in text and "task" in text and "duration" in text  # the table's columns


@pytest.mark.slow
def test_mlflow_server_serves_the_run_and_stops_after(run_workflow, tmp_path):
    port = free_port()
    doc = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"generateName": "mlflow-"},
        "spec": {
            "entrypoint": "probe",
            "arguments": {
                "parameters": [{"name": "mlflow-tracking-uri", "value": "http://mlflow.cluster:5000"}]
            },
            "templates": [
                {
                    "name": "probe",
                    "outputs": {"parameters": [{"name": "health", "valueFrom": {"path": "/tmp/health"}}]},
                    "container": {
                        "image": "python:3.11",
                        "command": ["python", "-c"],
                        "args": [
                            "import urllib.request, pathlib;"
                            " u = '{{workflow.parameters.mlflow-tracking-uri}}';"
                            " body = urllib.request.urlopen(u + '/health').read().decode();"
                            " pathlib.Path('/tmp/health').write_text(u + ' ' + body)"
                        ],
                    },
                }
            ],
        },
    }
    out = run_workflow(write_workflow(tmp_path, doc), "--mlflow-server", "--mlflow-port", str(port))
    assert out.exit_code == 0, out.output
    assert out.task("probe")["parameters"]["health"] == f"http://127.0.0.1:{port} OK"
    assert (out.local_dir / "mlflow.db").is_file()  # the store under --local-dir backs the server
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)  # stopped with the run
    assert f"sqlite:///{out.local_dir / 'mlflow.db'}" in " ".join(out.output.split())
