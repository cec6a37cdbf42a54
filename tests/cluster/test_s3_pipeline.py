"""End to end through S3: DVC registry remote, MLflow artifacts and the served model all on the
S3 server; then prove the planted credentials leaked nowhere."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from shared.processes import free_port
from tests.cluster.conftest import (
    DVC_BUCKET,
    MLFLOW_BUCKET,
    ROOT,
    S3PipelineData,
    S3Server,
    SearchRun,
    StepRunner,
    read_result,
)
from tests.http_wait import wait_http_ok
from tests.mlflow_server import MlflowServer

pytestmark = pytest.mark.slow

MODEL_NAME = "emotion-classifier"


def _s3_objects(server: S3Server, bucket: str) -> dict[str, bytes]:
    from shared.object_store import s3_client

    client = s3_client(server.endpoint_url, server.access_key_id, server.secret_access_key)
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            out[obj["Key"]] = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
    return out


def _serve(env: dict[str, str], log_path: Path, model_uri: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    serve_env = {
        **env,
        "SERVE_MODEL_URI": model_uri,
        "SERVE_HOST": "127.0.0.1",
        "SERVE_PORT": str(port),
        "SERVE_CACHE_DIR": str(log_path.parent / "serve-cache"),
        "SERVE_THREADS": "1",
    }
    with open(log_path, "wb") as log_fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "serving"],
            cwd=ROOT, env=serve_env, stdout=log_fh, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    return proc, f"http://127.0.0.1:{port}"


def _mlflow_records(tracking_uri: str) -> list[str]:
    """Every param, tag and name in the tracking server: runs of all experiments, the registry."""
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    texts: list[str] = []
    for exp in client.search_experiments(view_type=ViewType.ALL):
        texts += [exp.name, exp.artifact_location, *map(str, exp.tags.items())]
        for run in client.search_runs([exp.experiment_id], run_view_type=ViewType.ALL, max_results=1000):
            texts += [str(run.data.params), str(run.data.tags), run.info.artifact_uri or ""]
    for model in client.search_registered_models():
        texts.append(str(model.tags))
        for version in client.search_model_versions(f"name = '{model.name}'"):
            texts += [str(version.tags), version.source or "", version.run_id or ""]
    return texts


def _files_under(*roots: Path) -> list[Path]:
    return [p for root in roots for p in root.rglob("*") if p.is_file() and not p.is_symlink()]


def test_pipeline_end_to_end_through_s3_without_leaking_credentials(
    s3_server: S3Server,
    s3_mlflow_server: MlflowServer,
    s3_pipeline_data: S3PipelineData,
    local_search: SearchRun,
    step_runner: StepRunner,
    pipeline_env: dict[str, str],
    tmp_path: Path,
):
    import httpx
    from mlflow import MlflowClient

    # data: the fetch read the files from the DVC remote on S3 (the registry's cache was deleted)
    source_rows = len(pd.read_parquet(s3_pipeline_data.source_dir / "train.parquet"))
    assert s3_pipeline_data.fetch_result["rows"]["train"] == source_rows
    dvc_objects = _s3_objects(s3_server, DVC_BUCKET)
    assert any(key.startswith("emotion/files/md5/") for key in dvc_objects), sorted(dvc_objects)[:5]
    assert (s3_pipeline_data.tokenized_dir / "train.parquet").is_file()

    # search: the best model's files are objects in the MLflow bucket
    client = MlflowClient(tracking_uri=s3_mlflow_server.url)
    best_run = client.get_run(local_search.result["best_run_id"])
    assert best_run.info.artifact_uri.startswith(f"s3://{MLFLOW_BUCKET}/artifacts/")
    mlflow_objects = _s3_objects(s3_server, MLFLOW_BUCKET)
    assert any(k.endswith("model.safetensors") for k in mlflow_objects), sorted(mlflow_objects)[:10]

    # register: first version of the model, so it becomes champion
    register_dir = tmp_path / "register"
    step_runner(
        "steps.register", "--parent-run-id", local_search.result["parent_run_id"],
        "--dataset-dir", str(s3_pipeline_data.dataset_dir), "--model-name", MODEL_NAME,
        "--eval-limit", "120", "--result-dir", str(register_dir),
    )  # fmt: skip
    registered = read_result(register_dir)
    assert registered["promoted"] is True
    champion = client.get_model_version_by_alias(MODEL_NAME, "champion")
    assert champion.version == str(registered["version"])
    assert client.get_model_version_download_uri(MODEL_NAME, champion.version).startswith("s3://")

    # serve: models:/...@champion downloaded from S3 and answering
    serve_log = step_runner.log_dir / "serving.log"
    proc, url = _serve(pipeline_env, serve_log, f"models:/{MODEL_NAME}@champion")
    try:
        wait_http_ok(f"{url}/ready", proc, serve_log, timeout_s=120)
        info = httpx.get(f"{url}/info", timeout=10).json()
        response = httpx.post(f"{url}/predict", json={"texts": ["i feel so happy today"]}, timeout=30)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model_version"] == champion.version
        assert body["predictions"][0]["emotion"] in {"sadness", "joy", "love", "anger", "fear", "surprise"}
        assert 0.0 <= body["predictions"][0]["confidence"] <= 1.0
        assert champion.version in str(info)
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    # the planted credentials appear in no log, no MLflow record, no stored file
    secrets = [s3_server.secret_access_key, s3_server.access_key_id]
    logs = [run.log_path for run in step_runner.runs] + [serve_log, s3_mlflow_server.log_path]
    for path in logs:
        text = path.read_text(errors="replace")
        for secret in secrets:
            assert secret not in text, f"credential leaked into {path.name}"
    records = "\n".join(_mlflow_records(s3_mlflow_server.url))
    db_path = Path(s3_mlflow_server.backend_store_uri.removeprefix("sqlite:///"))
    with sqlite3.connect(db_path) as db:  # also rows the API does not show (deleted, internal)
        tables = [r[0] for r in db.execute("select name from sqlite_master where type='table'")]
        dump = "\n".join(str(row) for table in tables for row in db.execute(f'select * from "{table}"'))
    roots = (s3_pipeline_data.registry, local_search.out_dir, tmp_path, db_path.parent)
    stored = {str(p): p.read_bytes() for p in _files_under(*roots)}
    stored.update({f"s3:{k}": v for k, v in {**mlflow_objects, **dvc_objects}.items()})
    for secret in secrets:
        assert secret not in records
        assert secret not in dump
        leaked = [name for name, blob in stored.items() if secret.encode() in blob]
        assert not leaked, f"credential stored in {leaked}"
    assert len(dump) > 1000 and len(stored) > 20  # the greps did look at real content
    assert os.environ.get("AWS_SECRET_ACCESS_KEY") != s3_server.secret_access_key  # only children got it
