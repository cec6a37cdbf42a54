"""`run_local --engine podman`: steps run in the train image built from the commit, deploy starts the
serving image (slow)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from pipelines.run_local import app
from shared.containers import engine_command
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


def test_the_workflow_runs_in_its_images_through_deploy_of_the_serving_image(
    train_image, serving_image, tmp_path, tiny_base_model, dataset_dir
):
    """As Argo runs it: every step in the train image as the pod's uid 10001, MLflow as a server,
    and deploy (on the host, which has the engine) starts the serving image as the Deployment's pod."""
    local = tmp_path / ".local"
    build_registry(local, dataset_dir)
    model = tmp_path / "tiny-model"  # a --volume folder must be readable by the pod's user
    shutil.copytree(tiny_base_model, model)
    model.chmod(0o755)
    for file in model.iterdir():
        file.chmod(0o644)  # safetensors writes its weights 0600
    name, tag = train_image.rsplit(":", 1)
    assert serving_image.endswith(f":{tag}")  # both images from the commit
    registry = name.rsplit("/", 1)[0] if "/" in name else "localhost"  # podman's name for a local build
    port = free_port()
    params = {
        "model": "/models/tiny",
        "num-samples": "2",
        "max-epochs": "1",
        "limit": "120",
        "eval-limit": "60",
        "serving-port": str(port),
        "deploy-target": "container",
        "image-registry": registry,
        "image-tag": tag,
    }
    args = ["--profile", "demo", "--no-retry", "--volume", f"{model}:/models/tiny:ro"]
    args += ["--on-host", "deploy", "--mlflow-server", "--mlflow-port", str(free_port())]
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
            assert " --user 10001:10001 " in first and "--cap-drop=ALL" in first, first  # the pod's shape
        tokenized = run_dir / "tasks" / "tokenize-to-parquet" / "fs" / "tmp"
        assert {p.stat().st_uid for p in tokenized.rglob("*.parquet")} == {10001}  # written as the pod's user
        deploy = state["tasks"]["deploy"]["parameters"]
        assert deploy["deploy-target"] == "container", deploy
        url = deploy["endpoint-url"]
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["server"]["smoke_test"]["ok"], summary["server"]
        container = json.loads((local / "serving" / "container.json").read_text())
        assert container["image"].endswith(serving_image) and container["url"] == url
        _answers_all_protocols(url)
        exec_ = [*engine_command(), "exec", container["name"], "sh", "-c"]
        who = subprocess.run([*exec_, "id -u; touch /app/x"], capture_output=True, text=True, timeout=60)
        assert who.stdout.split()[0] == "10001" and "Read-only file system" in who.stderr, who

        from mlflow.tracking import MlflowClient

        client = MlflowClient(f"sqlite:///{local / 'mlflow.db'}")
        parent = client.get_run(state["tasks"]["hpo"]["parameters"]["parent-run-id"])
        assert parent.data.tags[CODE_VERSION_TAG] == tag  # the code that ran is the image's commit
    finally:
        stop_server(local)
    assert not (local / "serving" / "container.json").exists()  # `steps.deploy stop` stops the container


def _answers_all_protocols(url: str) -> None:
    texts = ["i feel so happy and loved today", "this makes me furious"]
    predict = httpx.post(f"{url}/predict", json={"texts": texts}, timeout=30)
    assert predict.status_code == 200, predict.text
    labels = [p["emotion"] for p in predict.json()["predictions"]]
    invocations = httpx.post(
        f"{url}/invocations",
        json={"dataframe_split": {"columns": ["text"], "data": [[t] for t in texts]}},
        timeout=30,
    )
    assert invocations.status_code == 200 and len(invocations.json()["predictions"]) == 2, invocations.text
    v2 = httpx.post(
        f"{url}/v2/models/emotion-classifier/infer",
        json={"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": texts}]},
        timeout=30,
    )
    assert v2.status_code == 200, v2.text
    assert {o["name"]: o for o in v2.json()["outputs"]}["label"]["data"] == labels
