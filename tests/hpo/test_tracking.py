"""MLflow logic of the trial callback: nested child runs, truthful statuses, no duplicates on resume."""

from __future__ import annotations

import pickle
from types import SimpleNamespace

import pytest

from steps.hpo.tracking import (
    FAILED,
    FINISHED,
    KILLED,
    MlflowTrialCallback,
    create_parent_run,
    outcome,
)


def _trial(trial_id: str, config=None, last_result=None, error: str | None = None):
    return SimpleNamespace(
        trial_id=trial_id,
        config=config or {"learning_rate": 3e-5, "batch_size": 16},
        last_result=last_result or {},
        num_failures=1,
        get_error=lambda: error,
        __str__=lambda self: f"run_trial_{trial_id}",
    )


@pytest.fixture
def parent(mlflow_settings):
    from mlflow.tracking import MlflowClient

    from shared.mlflow_utils import connect

    experiment_id = connect(mlflow_settings)
    client = MlflowClient()
    run_id = create_parent_run(
        client, experiment_id, "hpo-test", {"argo_workflow_uid": "u1"}, {"max_epochs": 3}
    )
    return client, experiment_id, run_id


def _callback(parent):
    client, experiment_id, run_id = parent
    return MlflowTrialCallback(client.tracking_uri, experiment_id, run_id, 3, {"argo_workflow_uid": "u1"})


def _result(epoch: int, num_epochs: int = 3, **extra):
    return {"epoch": epoch, "num_epochs": num_epochs, "val_loss": 1.0 / epoch, "val_accuracy": 0.5, **extra}


@pytest.mark.parametrize(
    ("last", "errored", "status"),
    [
        ({"epoch": 3, "num_epochs": 3}, False, FINISHED),
        ({"epoch": 1, "num_epochs": 3}, False, KILLED),
        ({"epoch": 2, "num_epochs": 2}, False, FINISHED),  # a trial with its own num_epochs
        ({}, False, KILLED),
        ({"epoch": 3, "num_epochs": 3}, True, FAILED),
    ],
)
def test_outcome(last, errored, status):
    assert outcome(last, 3, errored) == status


def test_child_runs_are_nested_tagged_and_closed_truthfully(parent):
    client, experiment_id, parent_id = parent
    cb = _callback(parent)
    finished, stopped, crashed = (
        _trial("t_00000"),
        _trial("t_00001"),
        _trial("t_00002", error="boom: CUDA OOM"),
    )
    for trial in (finished, stopped, crashed):
        cb.on_trial_start(iteration=0, trials=[], trial=trial)
    for epoch in (1, 2, 3):
        cb.on_trial_result(
            iteration=0, trials=[], trial=finished, result=_result(epoch, train_loss=2.0 / epoch)
        )
    cb.on_trial_result(iteration=0, trials=[], trial=stopped, result=_result(1))
    finished.last_result, stopped.last_result = _result(3, done=True), _result(1, done=True)
    cb.on_trial_complete(iteration=0, trials=[], trial=finished)
    cb.on_trial_complete(iteration=0, trials=[], trial=stopped)
    cb.on_trial_error(iteration=0, trials=[], trial=crashed)

    runs = {cb.runs[t.trial_id]: t for t in (finished, stopped, crashed)}
    got = {client.get_run(r).data.tags["trial_id"]: client.get_run(r) for r in runs}
    assert {r.data.tags["mlflow.parentRunId"] for r in got.values()} == {parent_id}
    assert got["t_00000"].info.status == FINISHED
    assert got["t_00001"].info.status == KILLED
    assert got["t_00002"].info.status == FAILED
    assert "CUDA OOM" in got["t_00002"].data.tags["error"]
    assert got["t_00000"].data.params == {"learning_rate": "3e-05", "batch_size": "16"}
    assert got["t_00000"].data.tags["argo_workflow_uid"] == "u1"
    history = client.get_metric_history(cb.runs["t_00000"], "train_loss")
    assert [(m.step, m.value) for m in history] == [(1, 2.0), (2, 1.0), (3, pytest.approx(2 / 3))]


def test_resumed_callback_reuses_child_runs_by_trial_id(parent):
    client, experiment_id, parent_id = parent
    first = _callback(parent)
    trial = _trial("t_00000")
    first.on_trial_start(iteration=0, trials=[], trial=trial)
    first.on_trial_result(iteration=0, trials=[], trial=trial, result=_result(1))

    restored = pickle.loads(pickle.dumps(first))  # Tune pickles callbacks into its experiment state
    restored.runs.clear()  # as after a driver crash before the state was saved
    restored.on_trial_start(iteration=0, trials=[], trial=trial)
    restored.on_trial_result(iteration=0, trials=[], trial=trial, result=_result(2))
    trial.last_result = _result(3, done=True)
    restored.on_trial_complete(iteration=0, trials=[], trial=trial)

    children = client.search_runs([experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")
    assert len(children) == 1
    assert children[0].info.status == FINISHED
    assert [m.step for m in client.get_metric_history(children[0].info.run_id, "val_loss")] == [1, 2]


def test_parent_run_carries_params_and_no_secrets(parent, mlflow_settings):
    client, experiment_id, parent_id = parent
    run = client.get_run(parent_id)
    assert run.data.tags["hpo_role"] == "parent" and run.data.params["max_epochs"] == "3"

    # Plant credentials in the settings the step builds its tags from, as a pod's env would.
    from pydantic import SecretStr

    from shared.lineage import lineage_tags

    planted = mlflow_settings.model_copy(
        update={
            "aws_access_key_id": SecretStr("AKIAPLANTEDKEY0001"),
            "aws_secret_access_key": SecretStr("planted/secret+value0001"),
        }
    )
    secrets = planted.secret_values()
    assert secrets == ["AKIAPLANTEDKEY0001", "planted/secret+value0001"]  # the loop below is not empty
    run_id = create_parent_run(
        client,
        experiment_id,
        "hpo-planted",
        lineage_tags(planted),
        {"max_epochs": 3, **planted.public_dict()},
    )
    run = client.get_run(run_id)
    logged = " ".join([*run.data.params.keys(), *run.data.params.values(), *run.data.tags.values()])
    assert "argo_workflow_uid" in logged or "wf-test-uid" in logged  # the settings did get logged
    for secret in secrets:
        assert secret not in logged


def test_trials_stopped_by_an_interruption_are_not_outcomes(parent):
    """Ctrl-C: Tune stops the running trial and the waiting ones through on_trial_complete, their
    last result not `done`; the running one is KILLED (a resume reopens it), a waiting one gets no run."""
    client, experiment_id, parent_id = parent
    cb = _callback(parent)
    running, waiting = _trial("t_00000"), _trial("t_00001")
    cb.on_trial_start(iteration=0, trials=[], trial=running)
    cb.on_trial_result(iteration=0, trials=[], trial=running, result=_result(1))
    running.last_result, waiting.last_result = _result(1), {}
    cb.on_trial_complete(iteration=0, trials=[], trial=running)
    cb.on_trial_complete(iteration=0, trials=[], trial=waiting)
    assert client.get_run(cb.runs["t_00000"]).info.status == KILLED
    assert "t_00001" not in cb.runs and "t_00001" not in cb.existing_children()


def test_a_replayed_epoch_is_logged_once(parent):
    """A trial restarted from the last snapshot redoes epochs whose metrics are already recorded."""
    client, _, _ = parent
    cb = _callback(parent)
    trial = _trial("t_00000")
    for epoch in (1, 2):
        cb.on_trial_result(iteration=0, trials=[], trial=trial, result=_result(epoch))
    resumed = _callback(parent)  # a new driver: the run is found again in MLflow
    for epoch in (2, 3):
        resumed.on_trial_result(iteration=0, trials=[], trial=trial, result=_result(epoch))
    history = client.get_metric_history(cb.runs["t_00000"], "val_loss")
    assert sorted(m.step for m in history) == [1, 2, 3]
