"""The `container` deploy target's refusals and the container it runs (no engine runs here; the run
itself is tests/images/test_engine_runs.py)."""

from __future__ import annotations

import pytest

from shared import containers
from shared.errors import StepError
from shared.settings import Settings
from steps.deploy import container
from steps.deploy.contract import DeployInput, Target


def _input(**kwargs) -> DeployInput:
    values = {"model_uri": "models:/emotion-classifier/3", "deploy_target": Target.container}
    return DeployInput(**{**values, "image": "localhost/emotion-serving:abc", **kwargs})


def test_a_sqlite_store_is_refused_naming_the_mlflow_server(tmp_path):
    settings = Settings(mlflow_tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", local_dir=str(tmp_path))
    with pytest.raises(StepError, match="--mlflow-server"):
        container.rollout_container(_input(), settings, tmp_path)


def test_no_image_is_refused(tmp_path):
    settings = Settings(mlflow_tracking_uri="http://127.0.0.1:5000", local_dir=str(tmp_path))
    with pytest.raises(StepError, match="--image"):
        container.rollout_container(_input(image=None), settings, tmp_path)


def test_the_container_is_the_deployments_pod_on_the_serving_port(tmp_path, monkeypatch):
    monkeypatch.setattr(containers.shutil, "which", lambda name: f"/usr/bin/{name}")
    settings = Settings(
        mlflow_tracking_uri="http://127.0.0.1:5000", local_dir=str(tmp_path), aws_access_key_id="key-id"
    )
    inp = _input(serve_env={"SERVE_MAX_BATCH": "16"})
    argv = container._run_argv(inp, settings, inp.model_uri, "3", tmp_path / "cache", "srv", 8123)
    assert argv[argv.index("--user") + 1] == "10001:10001" and "--read-only" in argv
    assert f"{(tmp_path / 'cache').resolve()}:/cache:rw" in argv and "/tmp:rw,mode=1777" in argv
    env = dict(argv[i + 1].split("=", 1) for i, word in enumerate(argv) if word == "--env")
    assert env["SERVE_PORT"] == "8123" and env["SERVE_MODEL_URI"] == "models:/emotion-classifier/3"
    assert env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5000" and env["SERVE_MAX_BATCH"] == "16"
    assert env["AWS_ACCESS_KEY_ID"] == "key-id"  # what the pod's Secret holds, from the step's settings
    assert "AWS_SECRET_ACCESS_KEY" not in env
    assert argv[-3:] == ["localhost/emotion-serving:abc", "-m", "serving"]
