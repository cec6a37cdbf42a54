"""Choosing the best child run, with stand-in run objects (the MLflow server tests cover the real API)."""

from types import SimpleNamespace

import pytest

from shared.errors import StepError
from steps.register.runs import find_best_child, get_parent_run


def _run(run_id, status="FINISHED", metrics=None, tags=None, params=None, start=0):
    return SimpleNamespace(
        info=SimpleNamespace(run_id=run_id, status=status, experiment_id="1", start_time=start),
        data=SimpleNamespace(metrics=metrics or {}, tags=tags or {}, params=params or {}),
    )


class _Client:
    def __init__(self, *runs):
        self.runs = {r.info.run_id: r for r in runs}

    def search_runs(self, experiment_ids, filter_string, **_):
        parent_id = filter_string.split("= ")[1].strip("'")
        return [r for r in self.runs.values() if r.data.tags.get("mlflow.parentRunId") == parent_id]

    def get_run(self, run_id):
        from mlflow.exceptions import MlflowException

        if run_id not in self.runs:
            raise MlflowException("not found", error_code="RESOURCE_DOES_NOT_EXIST")
        return self.runs[run_id]


def _child(run_id, status="FINISHED", **metrics):
    return _run(run_id, status, metrics, tags={"mlflow.parentRunId": "p"})


def test_lowest_val_loss_among_finished_children_wins():
    client = _Client(
        _child("a", val_loss=0.5), _child("b", val_loss=0.3), _child("k", "KILLED", val_loss=0.1)
    )
    assert find_best_child(client, _run("p")).info.run_id == "b"


def test_parent_search_metric_and_mode_are_honoured():
    client = _Client(_child("a", val_loss=0.5, val_accuracy=0.9), _child("b", val_loss=0.3, val_accuracy=0.8))
    parent = _run("p", params={"search_metric": "val_accuracy", "search_mode": "max"})
    assert find_best_child(client, parent).info.run_id == "a"


def test_best_run_id_tag_takes_precedence():
    client = _Client(_child("a", val_loss=0.5), _child("b", val_loss=0.3))
    assert find_best_child(client, _run("p", tags={"best_run_id": "a"})).info.run_id == "a"
    with pytest.raises(StepError, match="best_run_id=zzz, which is not a finished child"):
        find_best_child(client, _run("p", tags={"best_run_id": "zzz"}))


def test_no_finished_child_is_an_error_listing_statuses():
    client = _Client(_child("a", "FAILED", val_loss=0.5), _child("b", "KILLED", val_loss=0.3))
    with pytest.raises(StepError, match="no FINISHED child run .*statuses FAILED, KILLED"):
        find_best_child(client, _run("p"))
    with pytest.raises(StepError, match=r"no FINISHED child run \(0 child run\(s\)\)"):
        find_best_child(_Client(), _run("p"))


def test_children_without_the_metric_are_an_error():
    with pytest.raises(StepError, match="logged the search metric 'val_loss'"):
        find_best_child(_Client(_child("a")), _run("p"))


def test_unknown_or_child_run_is_not_a_parent():
    client = _Client(_child("c", val_loss=1.0))
    with pytest.raises(StepError, match="parent run 'nope' not found"):
        get_parent_run(client, "nope")
    with pytest.raises(StepError, match="is a child run"):
        get_parent_run(client, "c")
