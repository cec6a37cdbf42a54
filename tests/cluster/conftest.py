"""Cluster-grade fixtures: an S3 API server, an S3-backed `mlflow server`, a multi-node Ray cluster.

All of them run on 127.0.0.1 (or this machine's own address, for Ray) and are torn down at the
end. The S3 server checks request signatures, and its credentials are a planted, recognisable
secret so tests can prove it never leaks into logs or the MLflow store.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.processes import free_port, terminate_group
from tests.mlflow_server import MlflowServer, MlflowServerOptions, running_mlflow_server
from tests.ray_nodes import local_cluster, node_args, node_environment

ROOT = Path(__file__).resolve().parents[2]
S3_SERVER_SCRIPT = Path(__file__).with_name("s3_server.py")

PLANTED_ACCESS_KEY_ID = "AKIAPLANTEDCLUSTER42"
PLANTED_SECRET = "planted-S3-secret-c0ffee-must-never-appear-9f3b"
MLFLOW_BUCKET = "mlflow"
DVC_BUCKET = "dvc-remote"
EMPTY_BUCKET = "empty-bucket"


@dataclass(frozen=True)
class S3Server:
    """A running S3 stand-in; `env()` is what a pipeline process needs to use it."""

    endpoint_url: str
    access_key_id: str
    secret_access_key: str
    log_path: Path

    def env(self) -> dict[str, str]:
        return {
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        }


def _stop_group(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    terminate_group(proc.pid, grace=10, proc=proc)
    proc.wait(timeout=10)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> Iterator[S3Server]:
    """moto's S3 API on 127.0.0.1 with signature checks and the planted credentials."""
    tmp = tmp_path_factory.mktemp("s3-server")
    port = free_port()
    log_path = tmp / "s3-server.log"
    cmd = [
        sys.executable, str(S3_SERVER_SCRIPT), "--port", str(port),
        "--access-key-id", PLANTED_ACCESS_KEY_ID, "--secret-access-key", PLANTED_SECRET,
        "--bucket", MLFLOW_BUCKET, "--bucket", DVC_BUCKET, "--bucket", EMPTY_BUCKET,
    ]  # fmt: skip
    with open(log_path, "wb") as log_fh:
        proc = subprocess.Popen(cmd, stdout=log_fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while "READY" not in log_path.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"S3 server did not start:\n{tail}")
            time.sleep(0.1)
        yield S3Server(f"http://127.0.0.1:{port}", PLANTED_ACCESS_KEY_ID, PLANTED_SECRET, log_path)
    finally:
        _stop_group(proc)


@pytest.fixture(scope="session")
def s3_mlflow_server(s3_server: S3Server, tmp_path_factory) -> Iterator[MlflowServer]:
    """A real `mlflow server` whose artifact root is the S3 bucket: clients write artifacts there
    themselves with MLFLOW_S3_ENDPOINT_URL and AWS_* (the platform's MinIO setup)."""
    options = MlflowServerOptions(
        serve_artifacts=False,
        default_artifact_root=f"s3://{MLFLOW_BUCKET}/artifacts",
        env=s3_server.env(),
    )
    with running_mlflow_server(tmp_path_factory.mktemp("mlflow-s3"), options) as server:
        yield server


@pytest.fixture(scope="session")
def pipeline_env(s3_server: S3Server, s3_mlflow_server: MlflowServer, tmp_path_factory) -> dict[str, str]:
    """Environment for a step subprocess: S3 credentials, the tracking server, offline models."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_", "RAY_ADDRESS"))}
    env.update(s3_server.env())
    env.update(
        {
            "MLFLOW_TRACKING_URI": s3_mlflow_server.url,
            "MLFLOW_EXPERIMENT_NAME": "cluster-e2e",
            "EMOTION_LOCAL_DIR": str(tmp_path_factory.mktemp("local")),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "PYTHONPATH": str(ROOT),
        }
    )
    return env


@dataclass
class StepRun:
    """A finished step subprocess: exit code and its log (stdout + stderr)."""

    name: str
    returncode: int
    log_path: Path

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


class StepRunner:
    """Runs `python -m <module> ...` subprocesses, keeping every log so tests can grep them all."""

    def __init__(self, log_dir: Path, env: dict[str, str]):
        self.log_dir = log_dir
        self.env = env
        self.runs: list[StepRun] = []

    def __call__(
        self,
        name: str,
        *args: str,
        env: dict[str, str] | None = None,
        timeout: float = 300,
        check: bool = True,
    ) -> StepRun:
        log_path = self.log_dir / f"{len(self.runs):02d}-{name.replace(' ', '_')}.log"
        cmd = [sys.executable, "-m", *name.split(), *args]
        start = time.monotonic()
        with open(log_path, "wb") as log_fh:
            log_fh.write(("$ " + " ".join(cmd) + "\n").encode())
            log_fh.flush()
            proc = subprocess.run(
                cmd, cwd=ROOT, env={**self.env, **(env or {})}, stdout=log_fh, stderr=subprocess.STDOUT,
                timeout=timeout, check=False,
            )  # fmt: skip
            log_fh.write(f"[exit {proc.returncode} after {time.monotonic() - start:.1f}s]\n".encode())
        run = StepRun(name, proc.returncode, log_path)
        self.runs.append(run)
        if check and proc.returncode != 0:
            raise AssertionError(f"{name} exited {proc.returncode}:\n{run.log[-6000:]}")
        return run


@pytest.fixture(scope="session")
def step_runner(pipeline_env: dict[str, str], tmp_path_factory) -> StepRunner:
    return StepRunner(tmp_path_factory.mktemp("step-logs"), pipeline_env)


@dataclass
class RayCluster:
    """A multi-node Ray cluster on this machine (`ray.cluster_utils.Cluster`)."""

    cluster: object  # ray.cluster_utils.Cluster
    address: str  # the GCS address, for --ray-address
    dashboard_url: str  # the job-submission address, for `ray job submit --address`
    head_node_id: str
    worker_node_ids: list[str]
    node_env: dict[str, str]

    def add_node(self, num_cpus: int = 1):
        """Another worker node, with the same environment as the others."""
        with node_environment(self.node_env):
            node = self.cluster.add_node(**node_args(num_cpus))
        self.cluster.wait_for_nodes()
        return node


@pytest.fixture(scope="module")
def ray_cluster(pipeline_env: dict[str, str]) -> Iterator[RayCluster]:
    """A head (with the dashboard, for `ray job submit`) and one worker node, one CPU each, so two
    one-CPU trials must run on different nodes.

    The nodes get the platform environment (tracking URI, S3 endpoint and credentials) the way
    the pods of a KubeRay cluster get it from the Secret and ConfigMap. This process does not
    connect, so step subprocesses join by address exactly as they would join a remote cluster.
    """
    node_env = {k: v for k, v in pipeline_env.items() if os.environ.get(k) != v}
    cluster, dashboard_url, _ = local_cluster(node_env, head_cpus=1)
    try:
        ray = RayCluster(
            cluster=cluster,
            address=cluster.address,
            dashboard_url=dashboard_url,
            head_node_id=cluster.head_node.node_id,
            worker_node_ids=[],
            node_env=node_env,
        )
        ray.worker_node_ids.append(ray.add_node().node_id)
        yield ray
    finally:
        cluster.shutdown()


@dataclass(frozen=True)
class S3PipelineData:
    """The data half of the pipeline, run through S3: registry on S3, fetched, tokenized."""

    registry: Path
    source_dir: Path  # what the registry was built from
    dataset_dir: Path
    tokenized_dir: Path
    fetch_result: dict
    model: Path  # the tiny base model every search here fine-tunes


def read_result(result_dir: Path) -> dict:
    return json.loads((result_dir / "result.json").read_text())


@pytest.fixture(scope="session")
def s3_pipeline_data(
    step_runner: StepRunner, s3_server: S3Server, dataset_dir: Path, tiny_base_model: Path, tmp_path_factory
) -> S3PipelineData:
    """Publish the dataset to a DVC registry whose remote is the S3 bucket, then fetch and tokenize.

    The registry's local DVC cache is deleted after publishing and the registry is read through a
    `file://` git URL (a clone), so the fetch can only get the files from the S3 remote.
    """
    tmp = tmp_path_factory.mktemp("s3-pipeline")
    registry = tmp / "data-registry"
    step_runner(
        "shared.data_registry build",
        "--source", str(dataset_dir), "--registry", str(registry),
        "--remote", f"s3://{DVC_BUCKET}/emotion", "--remote-endpoint", s3_server.endpoint_url,
    )  # fmt: skip
    shutil.rmtree(registry / ".dvc" / "cache", ignore_errors=True)
    step_runner(
        "steps.dvc_fetch",
        "--registry-url", f"file://{registry}", "--data-version", "emotion-v1.0.0",
        "--data-path", "data/emotion",
        "--output-dir", str(tmp / "dataset"), "--result-dir", str(tmp / "fetch-result"),
    )  # fmt: skip
    step_runner(
        "steps.tokenize",
        "--dataset-dir", str(tmp / "dataset"), "--model", str(tiny_base_model), "--max-length", "64",
        "--limit", "120", "--seed", "0",
        "--output-dir", str(tmp / "tokenized"), "--result-dir", str(tmp / "tokenize-result"),
    )  # fmt: skip
    return S3PipelineData(
        registry=registry,
        source_dir=dataset_dir,
        dataset_dir=tmp / "dataset",
        tokenized_dir=tmp / "tokenized",
        fetch_result=read_result(tmp / "fetch-result"),
        model=tiny_base_model,
    )


def hpo_args(data: S3PipelineData, out_dir: Path, *, num_samples: int = 2, num_epochs: int = 1) -> list[str]:
    """The flags of a tiny search, identical for the local and the cluster run but for Ray's."""
    return [
        "--tokenized-dir", str(data.tokenized_dir), "--model", str(data.model),
        "--num-samples", str(num_samples), "--max-epochs", str(num_epochs), "--cpus-per-trial", "1",
        "--seed", "0", "--max-failures", "2",
        "--data-version", data.fetch_result["data_version"],
        "--dataset-hash", data.fetch_result["dataset_hash"],
        "--registry-url", data.fetch_result["registry_url"],
        "--storage-dir", str(out_dir / "tune"), "--result-dir", str(out_dir / "result"),
    ]  # fmt: skip


@dataclass(frozen=True)
class SearchRun:
    """A finished hpo step: its result fields and its output folder (Tune storage, result files)."""

    result: dict
    out_dir: Path


@pytest.fixture(scope="session")
def local_search(step_runner: StepRunner, s3_pipeline_data: S3PipelineData, tmp_path_factory) -> SearchRun:
    """The reference search: in-process Ray, artifacts to S3 through the S3-backed MLflow server."""
    out = tmp_path_factory.mktemp("hpo-local")
    step_runner("steps.hpo", *hpo_args(s3_pipeline_data, out), "--ray-num-cpus", "2")
    return SearchRun(read_result(out / "result"), out)
