"""Scale-out: the hpo step joins a multi-node Ray cluster, its trials spread over the nodes, the
MLflow record matches a local run's, and a worker node lost mid-search costs no trial."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cluster.conftest import (
    ROOT,
    RayCluster,
    S3PipelineData,
    SearchRun,
    StepRunner,
    hpo_args,
    read_result,
)
from tests.mlflow_server import MlflowServer

pytestmark = pytest.mark.slow

TRIAL_ACTOR = "ImplicitFunc"  # the actor class Ray Tune runs a function trainable in


def _trial_actors(address: str) -> list[dict]:
    """Every trial actor the cluster has run (alive or dead): its state and node id.

    Read from the GCS actor table, which Ray keeps for finished actors too; no dashboard needed.
    """
    import ray
    from ray._private import state

    ray.init(address=address, log_to_driver=False, configure_logging=False)
    try:
        return [
            {"node_id": a["Address"]["NodeID"], "state": a["State"], "pid": a.get("Pid")}
            for a in state.actors().values()
            if a["ActorClassName"].rsplit(".", 1)[-1] == TRIAL_ACTOR
        ]
    finally:
        ray.shutdown()


def _record(tracking_uri: str, parent_run_id: str) -> dict:
    """The shape of a search in MLflow: parent params/tags/metrics, and each child's."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    parent = client.get_run(parent_run_id)
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'"
    )
    return {
        "parent_params": parent.data.params,
        "parent_tag_keys": {k for k in parent.data.tags if not k.startswith("mlflow.")},
        "parent_metric_keys": set(parent.data.metrics),
        "parent_metrics": parent.data.metrics,
        "status": parent.info.status,
        "children": children,
        "child_params": sorted(json.dumps(c.data.params, sort_keys=True) for c in children),
        "child_metric_keys": sorted(json.dumps(sorted(c.data.metrics)) for c in children),
        "child_tag_keys": sorted(
            json.dumps(sorted(k for k in c.data.tags if not k.startswith("mlflow."))) for c in children
        ),
        "child_statuses": sorted(c.info.status for c in children),
    }


def test_hpo_joins_the_cluster_spreads_trials_and_records_like_a_local_run(
    ray_cluster: RayCluster,
    s3_pipeline_data: S3PipelineData,
    local_search: SearchRun,
    step_runner: StepRunner,
    s3_mlflow_server: MlflowServer,
    tmp_path: Path,
):
    step_runner("steps.hpo", *hpo_args(s3_pipeline_data, tmp_path), "--ray-address", ray_cluster.address)
    result = read_result(tmp_path / "result")

    actors = _trial_actors(ray_cluster.address)
    nodes = {a["node_id"] for a in actors}
    assert len(actors) >= 2
    assert nodes == {ray_cluster.head_node_id, *ray_cluster.worker_node_ids}, "trials did not spread"

    local = _record(s3_mlflow_server.url, local_search.result["parent_run_id"])
    cluster = _record(s3_mlflow_server.url, result["parent_run_id"])
    assert cluster["status"] == local["status"] == "FINISHED"
    assert len(cluster["children"]) == len(local["children"]) == 2
    # same flags and seed: the same parameters were searched and recorded the same way
    assert cluster["parent_params"] == local["parent_params"]
    assert cluster["child_params"] == local["child_params"]
    shape = ("parent_tag_keys", "parent_metric_keys", "child_metric_keys", "child_tag_keys", "child_statuses")
    for key in shape:
        assert cluster[key] == local[key], key
    assert result["model_uri"] == f"runs:/{result['best_run_id']}/model"


def test_search_submitted_as_ray_job_survives_losing_a_worker_node(
    ray_cluster: RayCluster,
    s3_pipeline_data: S3PipelineData,
    s3_mlflow_server: MlflowServer,
    tmp_path: Path,
):
    """`ray job submit -- python -m steps.hpo ... --ray-address auto` on the cluster; a node is
    killed while one of its trials runs, and Tune retries that trial elsewhere (max_failures)."""
    import ray

    victim = ray_cluster.add_node()
    before = {a["pid"] for a in _trial_actors(ray_cluster.address)}
    _wait_for_job_api(ray_cluster.dashboard_url)

    args = hpo_args(s3_pipeline_data, tmp_path, num_samples=3, num_epochs=2)
    search = [sys.executable, "-m", "steps.hpo", *args]
    # ray joins the entrypoint words with spaces and runs them in a shell
    cmd = [
        str(Path(sys.executable).with_name("ray")), "job", "submit", "--address", ray_cluster.dashboard_url,
        "--", *search, "--ray-address", "auto",
    ]  # fmt: skip
    secrets = [v for k, v in ray_cluster.node_env.items() if k.startswith("AWS_")]
    submit_env = {k: v for k, v in os.environ.items() if v not in secrets and k != "RAY_ADDRESS"}
    log_path = tmp_path / "ray-job-submit.log"
    proc = None
    try:
        ray.init(address=ray_cluster.address, log_to_driver=False, configure_logging=False)
        try:
            # Hold every CPU but the victim's, so the first trial must land there (no race with
            # fast trials finishing on other nodes); freed just before the node is killed.
            blockers = _occupy_cpus_except(victim.node_id)
            with open(log_path, "wb") as log_fh:
                proc = subprocess.Popen(
                    cmd, cwd=ROOT, env=submit_env, stdout=log_fh, stderr=subprocess.STDOUT
                )
            deadline = time.monotonic() + 300
            while not _running_on(victim.node_id, before):
                assert proc.poll() is None, (_actor_table(), victim.node_id, log_path.read_text()[-3000:])
                assert time.monotonic() < deadline, "no trial was ever placed on the node to kill"
                time.sleep(0.2)
            for blocker in blockers:
                ray.kill(blocker)
        finally:
            ray.shutdown()
        ray_cluster.cluster.remove_node(victim, allow_graceful=False)
        proc.wait(timeout=420)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
    log = log_path.read_text(errors="replace")
    assert proc.returncode == 0, log[-6000:]
    assert "succeeded" in log.lower()

    result = read_result(tmp_path / "result")
    record = _record(s3_mlflow_server.url, result["parent_run_id"])
    assert record["status"] == "FINISHED"
    assert len(record["children"]) == 3, "a retried trial must reuse its child run"
    assert set(record["child_statuses"]) <= {"FINISHED", "KILLED"}
    assert all("val_loss" in child.data.metrics for child in record["children"])
    assert record["parent_metrics"]["failed_trials"] == 0
    # the trial on the lost node failed once (its actor vanished) and then ran again to the end
    failed = [p.parent for p in (tmp_path / "tune").rglob("error.txt")]
    assert failed, "no trial recorded the node failure"
    for trial_dir in failed:
        error = (trial_dir / "error.txt").read_text(errors="replace")
        assert "Failure # 1" in error and "actor" in error.lower(), error[-2000:]
        trial_id = json.loads((trial_dir / "result.json").read_text().splitlines()[-1])["trial_id"]
        retried = [c for c in record["children"] if c.data.tags.get("trial_id") == trial_id]
        assert len(retried) == 1 and retried[0].info.status in {"FINISHED", "KILLED"}, trial_id

    # the credentials the nodes hold show up neither in the job's output nor in Ray's own logs
    session_logs = Path(ray_cluster.cluster.head_node.get_session_dir_path()) / "logs"
    texts = [log] + [p.read_text(errors="replace") for p in session_logs.rglob("*") if p.is_file()]
    for secret in secrets:
        assert not [t[:200] for t in texts if secret in t]


def _wait_for_job_api(url: str, timeout_s: float = 180) -> None:
    """A fresh head accepts jobs only once its dashboard agent registered: submit a no-op until then."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client = JobSubmissionClient(url)
            job_id = client.submit_job(entrypoint="true")
            break
        except (RuntimeError, ConnectionError):
            assert time.monotonic() < deadline, f"Ray job API at {url} never became ready"
            time.sleep(1)
    while client.get_job_status(job_id) not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}:
        assert time.monotonic() < deadline, f"no-op job {job_id} did not finish"
        time.sleep(0.5)
    assert client.get_job_status(job_id) == JobStatus.SUCCEEDED, client.get_job_logs(job_id)


def _occupy_cpus_except(node_id: str) -> list:
    """Actors pinned to every other alive node, holding all of its CPUs (kill them to free)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @ray.remote
    class CpuHolder:
        def ready(self) -> bool:
            return True

    holders = [
        CpuHolder.options(
            num_cpus=node["Resources"]["CPU"],
            scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False),
        ).remote()
        for node in ray.nodes()
        if node["Alive"] and node["NodeID"] != node_id and node["Resources"].get("CPU", 0) > 0
    ]
    ray.get([h.ready.remote() for h in holders], timeout=120)
    return holders


def _actor_table() -> list:
    from ray._private import state

    return [(a["ActorClassName"], a["State"], a["Address"]["NodeID"][:8]) for a in state.actors().values()]


def _running_on(node_id: str, ignore_pids: set) -> bool:
    from ray._private import state

    return any(
        a["ActorClassName"].rsplit(".", 1)[-1] == TRIAL_ACTOR
        and a["State"] == "ALIVE"
        and a["Address"]["NodeID"] == node_id
        and a.get("Pid") not in ignore_pids
        for a in state.actors().values()
    )
