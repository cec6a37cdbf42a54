"""`run_local --engine podman`: steps run in the train image built from the commit (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipelines.run_local import app
from shared.mlflow_contract import CODE_VERSION_TAG
from shared.processes import free_port
from tests.local_pipeline import build_registry, stop_server
from tests.runner.conftest import write_workflow

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "pipelines" / "emotion-hpo.yaml"


def _run(local: Path, workflow: Path, *args: str):
    return CliRunner().invoke(app, [str(workflow), "--local-dir", str(local), "--engine", "podman", *args])


def _reads_undeclared(image: str) -> dict:
    script = (
        "import os, pathlib, sys; pathlib.Path('/tmp/result').mkdir(exist_ok=True);"
        " pathlib.Path('/tmp/result/seen')"
        ".write_text(f\"{os.getuid()} {sys.executable} {os.environ['DECLARED']}\");"
        " print(os.environ['EMOTION_UNDECLARED'])"
    )
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"generateName": "undeclared-"},
        "spec": {
            "entrypoint": "read",
            "templates": [
                {
                    "name": "read",
                    "outputs": {"parameters": [{"name": "seen", "valueFrom": {"path": "/tmp/result/seen"}}]},
                    "container": {
                        "image": image,
                        "command": ["python", "-c", script],
                        "env": [{"name": "DECLARED", "value": "yes"}],
                    },
                }
            ],
        },
    }


def test_a_step_in_its_image_sees_only_its_declared_environment(train_image, tmp_path, monkeypatch):
    monkeypatch.setenv("EMOTION_UNDECLARED", "from the host")
    local = tmp_path / ".local"
    workflow = write_workflow(tmp_path, _reads_undeclared(train_image))
    out = _run(local, workflow, "--no-retry")
    assert out.exit_code == 1, out.output
    run_dir = next((local / "runs").iterdir())
    log = (run_dir / "logs" / "read.log").read_text()
    assert "KeyError: 'EMOTION_UNDECLARED'" in log and "run --rm" in log  # in the image, as in process mode
    again = _run(local, workflow, "--pass-env", "EMOTION_UNDECLARED")
    assert again.exit_code == 0, again.output
    runs = sorted(
        (local / "runs").iterdir(), key=lambda p: json.loads((p / "state.json").read_text())["created_at"]
    )
    seen = json.loads((runs[-1] / "state.json").read_text())["tasks"]["read"]["parameters"]["seen"].split()
    assert seen == [
        str(local.stat().st_uid),
        "/opt/venv/bin/python",
        "yes",
    ]  # the image's Python, not the venv


def test_the_workflow_runs_in_its_images_through_register(
    train_image, tmp_path, tiny_base_model, dataset_dir
):
    local = tmp_path / ".local"
    build_registry(local, dataset_dir)
    name, tag = train_image.rsplit(":", 1)
    registry = name.rsplit("/", 1)[0] if "/" in name else "localhost"  # podman's name for a local build
    port = free_port()
    params = {
        "model": "/models/tiny",
        "num-samples": "2",
        "max-epochs": "1",
        "limit": "120",
        "eval-limit": "60",
        "serving-port": str(port),
        "image-registry": registry,
        "image-tag": tag,
    }
    args = ["--profile", "demo", "--no-retry", "--volume", f"{tiny_base_model}:/models/tiny:ro"]
    args += ["--on-host", "deploy"]
    for key, value in params.items():
        args += ["--param", f"{key}={value}"]
    try:
        out = _run(local, WORKFLOW, *args)
        assert out.exit_code == 0, out.output
        run_dir = next((local / "runs").iterdir())
        state = json.loads((run_dir / "state.json").read_text())
        for step in ("dvc-fetch", "tokenize-to-parquet", "hpo", "register"):
            assert state["tasks"][step]["phase"] == "succeeded"
            first = (run_dir / "logs" / f"{step}.log").read_text().splitlines()[0]
            assert " run --rm " in first and train_image in first, first  # in the image
        assert " run --rm " not in (run_dir / "logs" / "deploy.log").read_text().splitlines()[0]
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["server"]["smoke_test"]["ok"], summary["server"]

        from mlflow.tracking import MlflowClient

        client = MlflowClient(f"sqlite:///{local / 'mlflow.db'}")
        parent = client.get_run(state["tasks"]["hpo"]["parameters"]["parent-run-id"])
        assert parent.data.tags[CODE_VERSION_TAG] == tag  # the code that ran is the image's commit
    finally:
        stop_server(local)
