"""The search's Tune experiment on the artifact store (the S3 loopback server), keyed by workflow uid.

Nothing a retried hpo step needs lives in the pod: the experiment is `s3://<bucket>/hpo/<uid>`,
the MLflow parent run carries the uid. A rerun after the search finished returns its result
without a new search (slow: a real Ray search).
"""

from __future__ import annotations

import pytest

from shared.settings import Settings
from steps.hpo.storage import SearchStorage
from tests.cluster.conftest import MLFLOW_BUCKET, S3PipelineData, S3Server, hpo_args, read_result

UID = "wf-s3-storage-1"


@pytest.fixture(autouse=True)
def _credentials_in_env(s3_server: S3Server, monkeypatch):
    """As in a pod: the AWS SDK of the search storage reads the keys from the environment."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_access_key)


def _settings(s3_server: S3Server) -> Settings:
    return Settings(
        mlflow_s3_endpoint_url=s3_server.endpoint_url,
        aws_access_key_id=s3_server.access_key_id,
        aws_secret_access_key=s3_server.secret_access_key,
    )


@pytest.mark.slow
def test_search_storage_reads_and_writes_on_s3(s3_server: S3Server):
    storage = SearchStorage.open(f"s3://{MLFLOW_BUCKET}/hpo-helpers/", _settings(s3_server))
    assert (
        storage.path == f"{MLFLOW_BUCKET}/hpo-helpers" and storage.uri == f"s3://{MLFLOW_BUCKET}/hpo-helpers"
    )
    assert storage.read_text("search.json") is None
    storage.write_text("search.json", '{"name": "x"}')
    assert storage.read_text("search.json") == '{"name": "x"}'
    assert not storage.can_restore("no-such-experiment")


@pytest.mark.slow
def test_workflow_search_lives_on_s3_and_a_rerun_reuses_it(
    step_runner, s3_server: S3Server, s3_pipeline_data: S3PipelineData, tmp_path
):
    from mlflow import MlflowClient

    out = tmp_path / "hpo"
    args = hpo_args(s3_pipeline_data, out)
    storage_uri = f"s3://{MLFLOW_BUCKET}/hpo"
    args[args.index("--storage-dir") + 1] = storage_uri
    args += ["--workflow-uid", UID, "--ray-num-cpus", "2"]
    step_runner("steps.hpo", *args, timeout=900)
    first = read_result(out / "result")

    storage = SearchStorage.open(storage_uri, _settings(s3_server))
    assert storage.can_restore(UID), "Tune's experiment is on S3, restorable by a new pod"
    # Tune pickles its storage filesystem into the experiment (tuner.pkl): no credential in it
    from tests.cluster.test_s3_pipeline import _s3_objects

    experiment = {k: v for k, v in _s3_objects(s3_server, MLFLOW_BUCKET).items() if k.startswith("hpo/")}
    assert any(k.endswith("tuner.pkl") for k in experiment), sorted(experiment)[:10]
    for secret in (s3_server.secret_access_key, s3_server.access_key_id):
        leaked = [k for k, blob in experiment.items() if secret.encode() in blob]
        assert not leaked, f"credential stored in {leaked}"
    assert not (out / "tune").exists()
    _assert_scheduler_journal_restorable(experiment, UID, trials=2)

    step_runner("steps.hpo", *args, timeout=900)  # the retry of a pod that died after the search
    again = read_result(out / "result")
    assert again["parent_run_id"] == first["parent_run_id"] and again["best_run_id"] == first["best_run_id"]
    client = MlflowClient(step_runner.env["MLFLOW_TRACKING_URI"])
    parent = client.get_run(first["parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags["argo_workflow_uid"] == UID
    assert parent.data.tags["tune_experiment"] == f"{storage_uri}/{UID}"
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert len(children) == 2


def _assert_scheduler_journal_restorable(experiment: dict[str, bytes], uid: str, *, trials: int) -> None:
    """ASHA's journal is in the snapshot on S3 (Tune's callback states, saved with the trials), and
    a fresh scheduler restored from it, as `Tuner.restore` does on a new pod, has every trial."""
    import pickle

    from shared.mlflow_contract import SEARCH_METRIC, SEARCH_MODE
    from steps.hpo.scheduler import ResumableASHA, SchedulerStateCallback
    from steps.hpo.trainable import TIME_ATTR

    states = sorted(
        k for k in experiment if k.startswith(f"hpo/{uid}/callback-states-") and k.endswith(".pkl")
    )
    assert states, sorted(experiment)[:20]
    saved = [s for s in pickle.loads(experiment[states[-1]]).values() if s and "events" in s]
    assert len(saved) == 1, "one scheduler journal in the snapshot"
    scheduler = ResumableASHA(
        metric=SEARCH_METRIC,
        mode=SEARCH_MODE,
        time_attr=TIME_ATTR,
        max_t=1,
        grace_period=1,
        reduction_factor=2,
    )
    SchedulerStateCallback(scheduler).set_state(saved[0])
    assert len(scheduler.known) == trials and {e[0] for e in scheduler.events} >= {"add", "result"}


def _one_at_a_time(data: S3PipelineData, out, uid: str) -> list[str]:
    """4 trials of up to 2 epochs, one at a time (ASHA's decisions in a fixed order), storage on S3."""
    args = hpo_args(data, out, num_samples=4, num_epochs=2)
    args[args.index("--storage-dir") + 1] = f"s3://{MLFLOW_BUCKET}/hpo"
    return [*args, "--workflow-uid", uid, "--ray-num-cpus", "1", "--torch-threads", "1"]


@pytest.mark.slow
def test_a_search_killed_on_s3_resumes_with_the_same_decisions(
    step_runner, s3_pipeline_data: S3PipelineData, tmp_path
):
    """SIGKILL of the driver mid-search (a pod's end), then the pod's retry with the same uid: ASHA's
    rungs come back from the snapshot on S3, so it stops the same trials with the same metrics."""
    import signal
    import sys

    from tests.hpo.driver import assert_same_decisions, signal_when, trial_epochs, trial_record

    env = step_runner.env
    tracking, experiment = env["MLFLOW_TRACKING_URI"], env["MLFLOW_EXPERIMENT_NAME"]
    step_runner("steps.hpo", *_one_at_a_time(s3_pipeline_data, tmp_path / "base", "wf-s3-base"), timeout=900)
    expected = trial_record(tracking, experiment, read_result(tmp_path / "base" / "result")["parent_run_id"])
    total = trial_epochs(expected)
    assert 4 < total < 8, "ASHA stopped some trials in the uninterrupted search"

    argv = [
        sys.executable,
        "-m",
        "steps.hpo",
        *_one_at_a_time(s3_pipeline_data, tmp_path / "run", "wf-s3-kill"),
    ]

    def parent() -> str | None:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking)
        found = client.get_experiment_by_name(experiment)
        runs = client.search_runs(
            [found.experiment_id], "tags.hpo_role = 'parent' and tags.argo_workflow_uid = 'wf-s3-kill'"
        )
        return runs[0].info.run_id if runs else None

    def halfway() -> bool:
        run_id = parent()
        return run_id is not None and trial_epochs(trial_record(tracking, experiment, run_id)) >= total // 2

    killed = signal_when(argv, env, halfway, signal.SIGKILL, tmp_path / "killed.log", timeout=600)
    assert killed.returncode == -signal.SIGKILL
    before = trial_epochs(trial_record(tracking, experiment, parent()))
    assert 0 < before < total

    step_runner("steps.hpo", *argv[3:], timeout=900)  # the retried pod: a new driver, the same uid
    got = trial_record(tracking, experiment, parent())
    assert_same_decisions(got, expected)
