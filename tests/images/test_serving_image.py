"""The slim serving image, run as the Deployment runs it: uid 10001, read-only root filesystem,
only the Deployment's volumes writable, the model pulled from an MLflow server (slow).

The container's flags come from the Deployment that `steps/deploy/k8s_render.py` renders (one
source for the pod's shape: `shared/containers.py`).
"""

from __future__ import annotations

import subprocess
import time
import uuid

import httpx
import pytest

from shared.containers import declared_env, engine_command, run_argv
from shared.processes import free_port
from steps.deploy.k8s_render import K8sSpec, render_deployment
from tests.mlflow_server import running_mlflow_server

pytestmark = pytest.mark.slow
READY_TIMEOUT_S = 240
TEXTS = ["i feel so happy and loved today", "this makes me furious"]


def _register(tracking_uri: str, model_dir, dataset_dir, tmp_path) -> str:
    """The tiny model and its serving artifact, registered as register does; returns the version."""
    import mlflow
    import pandas as pd
    from mlflow import MlflowClient

    from serving.export import SERVING_ARTIFACT_PATH, SERVING_ARTIFACT_TAG, build_serving_artifact
    from serving.settings import DEFAULT_BACKEND
    from shared.model_package import log_model

    texts = pd.read_parquet(dataset_dir / "train.parquet")["text"].head(64).tolist()
    artifact = build_serving_artifact(
        model_dir, tmp_path / SERVING_ARTIFACT_PATH, kind=DEFAULT_BACKEND, calibration_texts=texts
    )
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    experiment = client.create_experiment(f"image-test-{uuid.uuid4().hex[:6]}")
    with mlflow.start_run(experiment_id=experiment) as run:
        log_model(model_dir)
        mlflow.log_artifacts(str(artifact), SERVING_ARTIFACT_PATH)
    version = mlflow.register_model(f"runs:/{run.info.run_id}/model", "emotion-classifier").version
    uri = f"runs:/{run.info.run_id}/{SERVING_ARTIFACT_PATH}"
    client.set_model_version_tag("emotion-classifier", version, SERVING_ARTIFACT_TAG, uri)
    client.set_registered_model_alias("emotion-classifier", "champion", version)
    return str(version)


def _wait_ready(url: str, name: str) -> dict:
    deadline = time.monotonic() + READY_TIMEOUT_S
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"{url}/ready", timeout=2)
            if response.status_code == 200:
                return response.json()
            last = response.text
            if response.json().get("status") == "failed":
                break
        except httpx.HTTPError as exc:
            last = repr(exc)
        running = subprocess.run([*engine_command(), "container", "exists", name], capture_output=True)
        if running.returncode != 0:
            break
        time.sleep(0.25)
    logs = subprocess.run([*engine_command(), "logs", name], capture_output=True, text=True).stdout
    pytest.fail(f"serving container not ready ({last}):\n{logs[-4000:]}")


def test_serving_image_answers_all_protocols_as_the_deployment_runs_it(
    serving_image, tiny_model_dir, dataset_dir, tmp_path
):
    with running_mlflow_server(tmp_path / "mlflow") as server:
        version = _register(server.url, tiny_model_dir, dataset_dir, tmp_path)
        port = free_port()
        spec = K8sSpec(
            name="emotion-serving",
            namespace="test",
            image=serving_image,
            model_uri="models:/emotion-classifier@champion",
            model_version=version,
            env={"MLFLOW_TRACKING_URI": server.url, "SERVE_PORT": str(port)},
        )
        pod = render_deployment(spec)["spec"]["template"]["spec"]
        container = pod["containers"][0]
        cache = tmp_path / "cache"
        cache.mkdir()
        cache.chmod(0o777)  # an emptyDir is writable by the pod's fsGroup
        name = f"serving-{uuid.uuid4().hex[:8]}"
        argv = run_argv(
            container,
            image=serving_image,
            sources={"/cache": cache, "/tmp": None},
            env=declared_env(container),
            pod_security=pod["securityContext"],
            name=name,
            detach=True,
        )
        subprocess.run(argv, check=True, capture_output=True, timeout=120)
        url = f"http://127.0.0.1:{port}"
        try:
            ready = _wait_ready(url, name)
            assert str(ready.get("model_version", version)) == version, ready
            predict = httpx.post(f"{url}/predict", json={"texts": TEXTS}, timeout=30)
            assert predict.status_code == 200, predict.text
            assert [p["text"] for p in predict.json()["predictions"]] == TEXTS
            invocations = httpx.post(
                f"{url}/invocations",
                json={"dataframe_split": {"columns": ["text"], "data": [[t] for t in TEXTS]}},
                timeout=30,
            )
            assert invocations.status_code == 200, invocations.text
            assert len(invocations.json()["predictions"]) == len(TEXTS)
            v2 = httpx.post(
                f"{url}/v2/models/emotion-classifier/infer",
                json={"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": TEXTS}]},
                timeout=30,
            )
            assert v2.status_code == 200, v2.text
            outputs = {o["name"]: o for o in v2.json()["outputs"]}
            assert outputs["label"]["data"] == [p["emotion"] for p in predict.json()["predictions"]]
            # the pod's shape really applies: uid 10001, the root is read-only, /cache is not
            exec_ = [*engine_command(), "exec", name, "sh", "-c"]
            who = subprocess.run([*exec_, "id -u; id -g"], capture_output=True, text=True, timeout=60)
            assert who.stdout.split() == ["10001", "10001"], who
            root = subprocess.run([*exec_, "touch /app/x"], capture_output=True, text=True, timeout=60)
            assert root.returncode != 0 and "Read-only file system" in root.stderr, root
            assert any(cache.rglob("*.onnx")) or any(cache.rglob("model.onnx")), list(cache.rglob("*"))[:20]
            no_torch = subprocess.run([*exec_, "python -c 'import torch'"], capture_output=True, timeout=60)
            assert no_torch.returncode != 0  # the slim image has no torch
            no_hf = subprocess.run(
                [*exec_, "python -c 'import transformers'"], capture_output=True, timeout=60
            )
            assert no_hf.returncode != 0  # nor transformers: tokenizers runs tokenizer.json
        finally:
            subprocess.run([*engine_command(), "rm", "-f", name], capture_output=True, timeout=120)
        # cold start with the model in the cache volume (docs/benchmarks.md): printed, not asserted
        again = [name if a == name else a for a in argv]
        started = time.monotonic()
        subprocess.run(again, check=True, capture_output=True, timeout=120)
        try:
            _wait_ready(url, name)
            print(f"\nserving container cold start, model cached: {time.monotonic() - started:.1f}s")
        finally:
            subprocess.run([*engine_command(), "rm", "-f", name], capture_output=True, timeout=120)
        _a_model_without_serving_artifact_fails_in_one_line(
            server.url, serving_image, container, pod, url, name
        )


def _a_model_without_serving_artifact_fails_in_one_line(tracking_uri, image, container, pod, url, name):
    """This image cannot export a model (no torch): /ready says so in one line, the log has no traceback."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    champion = client.get_model_version_by_alias("emotion-classifier", "champion")
    # the same model registered again, without the serving_artifact_uri tag register sets
    bare = mlflow.register_model(f"runs:/{champion.run_id}/model", "emotion-classifier").version
    env = {**declared_env(container), "SERVE_MODEL_URI": f"models:/emotion-classifier/{bare}"}
    bare_argv = run_argv(
        container,
        image=image,
        sources={"/cache": None, "/tmp": None},
        env=env,
        pod_security=pod["securityContext"],
        name=name,
        detach=True,
    )
    subprocess.run(bare_argv, check=True, capture_output=True, timeout=120)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        body: dict = {}
        while time.monotonic() < deadline and body.get("status") != "failed":
            try:
                body = httpx.get(f"{url}/ready", timeout=2).json()
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        assert body.get("status") == "failed", body
        assert "no serving artifact" in body["reason"] and "emotion-hpo-train" in body["reason"], body
        logs = subprocess.run([*engine_command(), "logs", name], capture_output=True, text=True, timeout=60)
        assert "Traceback" not in logs.stdout + logs.stderr, logs.stdout[-3000:] + logs.stderr[-3000:]
    finally:
        subprocess.run([*engine_command(), "rm", "-f", name], capture_output=True, timeout=120)
