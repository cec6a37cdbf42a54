"""Model URIs: local dirs, registry aliases and versions, runs:/ URIs; cached downloads; lineage."""

from __future__ import annotations

import pytest

from serving.model_loader import ModelLoadError, reported_version, resolve_model
from tests.conftest import reset_mlflow_process_state


def test_local_model_dir_resolves_to_itself(tiny_model_dir, tmp_path):
    resolved = resolve_model(str(tiny_model_dir), tmp_path / "cache")
    assert resolved.model_dir == tiny_model_dir and resolved.model_version == "local"
    assert resolved.run_id is None and resolved.lineage == {} and resolved.data_version is None
    assert reported_version(str(tiny_model_dir)) == resolved.model_version  # what a deploy gates on


@pytest.mark.parametrize(
    "uri, message",
    [
        ("models:/emotion-classifier/Production", "version must be a number"),
        ("s3://bucket/model", "is not models:/"),
        ("/definitely/not/here", "is not models:/"),
    ],
)
def test_unusable_uris_raise_a_clear_error(uri, message, tmp_path):
    with pytest.raises(ModelLoadError, match=message):
        resolve_model(uri, tmp_path / "cache", tracking_uri=f"sqlite:///{tmp_path}/m.db")


@pytest.fixture(scope="module")
def registered(tiny_model_dir, tmp_path_factory, mlflow_env_baseline):
    """A tracking store with the tiny model logged to a run and registered as version 1 @champion."""
    import mlflow
    from mlflow import MlflowClient

    from shared.model_package import log_model

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        experiment = mlflow.create_experiment("serving-test", artifact_location=str(root / "artifacts"))
        with mlflow.start_run(experiment_id=experiment) as run:
            mlflow.set_tag("dvc_data_version", "emotion-v1.0.0")
            log_model(tiny_model_dir)
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        version = mlflow.register_model(f"runs:/{run.info.run_id}/model", "emotion-classifier").version
        client.set_registered_model_alias("emotion-classifier", "champion", version)
        for key, value in {"dvc_data_version": "emotion-v1.0.0", "argo_workflow_uid": "wf-1"}.items():
            client.set_model_version_tag("emotion-classifier", version, key, value)
    finally:  # set_*_uri(None) would leave MLFLOW_REGISTRY_URI set and MLFLOW_TRACKING_URI unset
        reset_mlflow_process_state(mlflow_env_baseline)
    return uri, run.info.run_id, str(version)


@pytest.mark.slow
@pytest.mark.parametrize("alias", [True, False])
def test_registry_uri_downloads_once_and_carries_lineage(registered, tmp_path, monkeypatch, alias):
    import mlflow

    uri, run_id, version = registered
    model_uri = "models:/emotion-classifier@champion" if alias else f"models:/emotion-classifier/{version}"
    resolved = resolve_model(model_uri, tmp_path / "cache", tracking_uri=uri)
    assert resolved.model_version == version and resolved.run_id == run_id
    assert resolved.lineage["argo_workflow_uid"] == "wf-1" and resolved.data_version == "emotion-v1.0.0"
    assert (resolved.model_dir / "model.safetensors").is_file() and (
        resolved.model_dir / "labels.json"
    ).is_file()
    cached = tmp_path / "cache" / "models" / "emotion-classifier" / f"{version}-{run_id}"
    assert cached in resolved.model_dir.parents

    def no_download(**kwargs):
        raise AssertionError("the cached copy should have been used")

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", no_download)
    again = resolve_model(model_uri, tmp_path / "cache", tracking_uri=uri)
    assert again.model_dir == resolved.model_dir


@pytest.mark.slow
def test_runs_uri_resolves_with_run_tags_as_lineage(registered, tmp_path):
    uri, run_id, _ = registered
    resolved = resolve_model(f"runs:/{run_id}/model", tmp_path / "cache", tracking_uri=uri)
    assert resolved.run_id == run_id and resolved.model_version == f"run-{run_id[:12]}"
    assert reported_version(f"runs:/{run_id}/model") == resolved.model_version
    assert reported_version("models:/emotion-classifier/3") is None  # the registry's number
    assert resolved.data_version == "emotion-v1.0.0"
    assert (resolved.model_dir / "model.safetensors").is_file()


@pytest.mark.slow
def test_unknown_alias_names_the_uri(registered, tmp_path):
    uri, _, _ = registered
    with pytest.raises(ModelLoadError, match="models:/emotion-classifier@nope"):
        resolve_model("models:/emotion-classifier@nope", tmp_path / "cache", tracking_uri=uri)


@pytest.mark.slow
def test_app_serves_the_registry_version_with_its_lineage(registered, tmp_path):
    from fastapi.testclient import TestClient

    from serving.app import create_app
    from tests.serving.conftest import make_settings, wait_ready

    uri, run_id, version = registered
    settings = make_settings(tmp_path, tmp_path, model_uri="models:/emotion-classifier@champion")
    with TestClient(create_app(settings, tracking_uri=uri)) as c:
        wait_ready(c.get)
        info = c.get("/info").json()
        predicted = c.post("/predict", json={"texts": ["I love this!"]}).json()
    assert info["model_version"] == version and info["run_id"] == run_id
    assert info["data_version"] == "emotion-v1.0.0" and info["lineage"]["argo_workflow_uid"] == "wf-1"
    assert predicted["model_version"] == version
    assert predicted["model_uri"] == "models:/emotion-classifier@champion"
