"""Resume: kill -9 of the search driver mid-way, then `--resume` (slow)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.local_runner.process import Attempt
from steps.hpo.tracking import FAILED, FINISHED, KILLED, TRIAL_ID_TAG
from tests.hpo.driver import ROOT, SavedAfter, signal_when, step_env

pytestmark = pytest.mark.slow


def _cli(tokenized_dir, model, storage, result_dir, *extra) -> list[str]:
    return [
        sys.executable, "-m", "steps.hpo",
        "--tokenized-dir", str(tokenized_dir), "--model", str(model),
        "--num-samples", "3", "--max-epochs", "2", "--limit", "120",
        "--cpus-per-trial", "1", "--ray-num-cpus", "2",
        "--seed", "3", "--storage-dir", str(storage), "--result-dir", str(result_dir), *extra,
    ]  # fmt: skip


def _children(client, experiment_id):
    runs = client.search_runs([experiment_id], filter_string="tags.hpo_role = 'trial'", max_results=100)
    return {r.info.run_id: r for r in runs}


def test_killed_search_resumes_without_rerunning_or_duplicating(
    tokenized_dir, tiny_base_model, tmp_path, mlflow_settings
):
    from mlflow.tracking import MlflowClient

    from shared.mlflow_utils import connect

    env = _env(mlflow_settings)
    storage, result_dir = tmp_path / "tune", tmp_path / "result"
    experiment_id = connect(mlflow_settings)
    client = MlflowClient()

    argv = _cli(tokenized_dir, tiny_base_model, storage, result_dir)
    _signal_mid_search(
        argv, env, client, experiment_id, signal.SIGKILL, tmp_path / "1.log", storage, timeout=180
    )
    done_before: dict[str, tuple[int, int]] = {}
    before = _children(client, experiment_id)
    for run_id, run in before.items():
        if run.info.status in (FINISHED, KILLED):
            done_before[run_id] = (run.info.end_time, len(client.get_metric_history(run_id, "val_loss")))
    assert done_before, "killed after at least one trial completed"
    unfinished = len(before) < 3 or any(r.info.status == "RUNNING" for r in before.values())
    assert unfinished, "killed before every trial completed"
    assert not result_dir.joinpath("result.json").exists()

    resumed = subprocess.run(
        _cli(tokenized_dir, tiny_base_model, storage, result_dir, "--resume"),
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    after = _children(client, experiment_id)
    trial_ids = [r.data.tags[TRIAL_ID_TAG] for r in after.values()]
    assert len(trial_ids) == 3 and len(set(trial_ids)) == 3, "no duplicate child runs"
    assert set(before) <= set(after)
    parents = {r.data.tags["mlflow.parentRunId"] for r in after.values()}
    assert len(parents) == 1
    assert all(r.info.status in (FINISHED, KILLED, FAILED) for r in after.values())
    for run_id, (end_time, epochs) in done_before.items():  # completed trials were not rerun
        assert after[run_id].info.end_time == end_time
        assert len(client.get_metric_history(run_id, "val_loss")) == epochs
    parent = client.get_run(parents.pop())
    assert parent.info.status == FINISHED
    assert (result_dir / "parent-run-id").read_text() == parent.info.run_id


def _env(mlflow_settings) -> dict[str, str]:
    return step_env(mlflow_settings.mlflow_tracking_uri, mlflow_settings.mlflow_experiment_name)


def _signal_mid_search(argv, env, client, experiment_id, sig, log: Path, storage: Path, timeout: float = 240):
    """Start the step and send `sig` once a trial has ended, Tune has saved that, and others run."""

    def a_trial_ended() -> bool:
        statuses = [r.info.status for r in _children(client, experiment_id).values()]
        return FINISHED in statuses or KILLED in statuses

    return signal_when(argv, env, SavedAfter(a_trial_ended, storage), sig, log, timeout=timeout)


def _retried(argv, env, strategy, attempts: int = 3) -> subprocess.CompletedProcess:
    """Run the step as the runner's retry does: again while the template's retry rule says so
    (exit 75 here: e.g. the local Ray not starting in time on an overloaded machine)."""
    for attempt in range(1, attempts + 1):
        proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        status = "Succeeded" if proc.returncode == 0 else "Failed"
        outcome = Attempt(proc.returncode, status, "", "", 1.0)
        if proc.returncode == 0 or not strategy.should_retry(outcome, attempt, 1.0)[0]:
            return proc
    return proc


def test_retried_workflow_step_continues_its_search_after_sigkill(
    tokenized_dir, tiny_base_model, tmp_path, mlflow_settings
):
    """The workflow's hpo step (same argv, --workflow-uid, no --resume) killed -9 and run again, as a
    retry does: finished trials kept and not rerun, one parent run, no duplicate children, none RUNNING."""
    from mlflow.tracking import MlflowClient

    from pipelines.emotion_hpo import build_workflow, to_manifest
    from pipelines.local_runner.retry import RetryStrategy
    from shared.mlflow_utils import connect

    # The compiled hpo template retries an attempt killed by a signal (Argo: a pod error).
    hpo = next(t for t in to_manifest(build_workflow())["spec"]["templates"] if t["name"] == "hpo")
    strategy = RetryStrategy.from_spec(hpo["retryStrategy"], "hpo")
    assert strategy.should_retry(Attempt(-9, "Error", "killed by SIGKILL", "", 30.0), 1, 30.0)[0]

    env = _env(mlflow_settings)
    storage, result_dir = tmp_path / "hpo", tmp_path / "result"
    experiment_id = connect(mlflow_settings)
    client = MlflowClient()
    argv = _cli(tokenized_dir, tiny_base_model, storage, result_dir, "--workflow-uid", "wf-uid-1")

    _signal_mid_search(argv, env, client, experiment_id, signal.SIGKILL, tmp_path / "1.log", storage)
    before = _children(client, experiment_id)
    done_before = {
        run_id: (run.info.end_time, len(client.get_metric_history(run_id, "val_loss")))
        for run_id, run in before.items()
        if run.info.status in (FINISHED, KILLED)
    }
    assert done_before, "killed after at least one trial ended"
    assert (storage / "wf-uid-1").is_dir(), "the experiment lives under <storage>/<workflow uid>"

    retried = _retried(argv, env, strategy)
    assert retried.returncode == 0, retried.stderr[-3000:]

    after = _children(client, experiment_id)
    trial_ids = [r.data.tags[TRIAL_ID_TAG] for r in after.values()]
    assert len(trial_ids) == 3 and len(set(trial_ids)) == 3, "no duplicate child runs"
    for run_id, (end_time, epochs) in done_before.items():  # finished trials were not rerun
        assert after[run_id].info.end_time == end_time
        assert len(client.get_metric_history(run_id, "val_loss")) == epochs
    parents = client.search_runs([experiment_id], filter_string="tags.hpo_role = 'parent'")
    assert [p.info.run_id for p in parents] == [(result_dir / "parent-run-id").read_text()]
    assert parents[0].data.tags["argo_workflow_uid"] == "wf-uid-1"
    every = client.search_runs([experiment_id], max_results=100)
    assert not [r.info.run_id for r in every if r.info.status == "RUNNING"]

    # A third attempt (the pod died after the search finished, before its outputs were saved)
    # returns the same result without searching again.
    again = _retried(argv, env, strategy)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (result_dir / "parent-run-id").read_text() == parents[0].info.run_id
    assert len(_children(client, experiment_id)) == 3


def test_terminated_search_marks_its_runs_killed(tokenized_dir, tiny_base_model, tmp_path, mlflow_settings):
    """SIGTERM (an eviction, the local runner stopping) leaves no run RUNNING: parent and open
    children are KILLED, and the step exits as interrupted."""
    from mlflow.tracking import MlflowClient

    from shared.mlflow_utils import connect

    env = _env(mlflow_settings)
    experiment_id = connect(mlflow_settings)
    client = MlflowClient()
    argv = _cli(
        tokenized_dir, tiny_base_model, tmp_path / "hpo", tmp_path / "result", "--workflow-uid", "wf-2"
    )
    log = tmp_path / "step.log"
    driver = _signal_mid_search(argv, env, client, experiment_id, signal.SIGTERM, log, tmp_path / "hpo")
    assert driver.returncode == 130, log.read_text()[-3000:]
    runs = client.search_runs([experiment_id], max_results=100)
    parent = [r for r in runs if r.data.tags.get("hpo_role") == "parent"]
    assert len(parent) == 1 and parent[0].info.status == KILLED
    assert not [r.info.run_id for r in runs if r.info.status == "RUNNING"]
