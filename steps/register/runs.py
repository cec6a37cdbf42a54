"""Find the hpo parent run and its best child run in MLflow, with clear errors for bad input."""

from __future__ import annotations

import math

from shared.errors import StepError
from shared.mlflow_contract import (
    BEST_RUN_TAG,
    SEARCH_METRIC,
    SEARCH_METRIC_PARAM,
    SEARCH_MODE,
    SEARCH_MODE_PARAM,
    WORKFLOW_UID_TAG,
    parent_runs_of_workflow,
    quoted,
)
from shared.mlflow_contract import PARENT_RUN_TAG as PARENT_TAG

ACCEPTED_BEST_STATUSES = ("FINISHED", "KILLED")  # ASHA marks early-stopped trials KILLED


def get_parent_run(client, parent_run_id: str):
    """The parent run by id; a child run id or an unknown id is a StepError."""
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(parent_run_id)
    except MlflowException as exc:
        raise StepError(f"parent run {parent_run_id!r} not found in MLflow ({exc.error_code})") from None
    parent_of_it = run.data.tags.get(PARENT_TAG)
    if parent_of_it:
        raise StepError(
            f"run {parent_run_id} is a child run (its parent is {parent_of_it}); pass the hpo parent run id"
        )
    return run


def find_parent_run_by_workflow(client, experiment_id: str, workflow_uid: str):
    """The newest top-level run in the experiment tagged with the workflow uid."""
    parents = parent_runs_of_workflow(client, [experiment_id], workflow_uid)
    if not parents:
        raise StepError(
            f"no parent run tagged {WORKFLOW_UID_TAG}={workflow_uid} in experiment {experiment_id}"
        )
    return parents[0]


def list_children(client, parent) -> list:
    return list(
        client.search_runs(
            [parent.info.experiment_id],
            filter_string=f"tags.`{PARENT_TAG}` = {quoted(parent.info.run_id, 'run id')}",
            max_results=10000,
        )
    )


def search_metric(parent) -> tuple[str, str]:
    """The metric and mode the search optimised, as the hpo step recorded them on the parent run.

    Parent runs made before these params existed optimised the same metric, the contract's default.
    """
    params = parent.data.params
    metric = params.get(SEARCH_METRIC_PARAM) or SEARCH_METRIC
    mode = params.get(SEARCH_MODE_PARAM) or SEARCH_MODE
    if mode not in ("min", "max"):
        raise StepError(f"parent run {parent.info.run_id}: mode {mode!r} must be 'min' or 'max'")
    return metric, mode


def find_best_child(client, parent):
    """The child the search chose: the parent's best_run_id tag, else the best FINISHED child by metric."""
    pid = parent.info.run_id
    children = list_children(client, parent)
    finished = [c for c in children if c.info.status == "FINISHED"]
    if not finished:
        statuses = sorted({c.info.status for c in children})
        raise StepError(
            f"parent run {pid} has no FINISHED child run "
            f"({len(children)} child run(s){', statuses ' + ', '.join(statuses) if statuses else ''})"
        )
    tagged = parent.data.tags.get(BEST_RUN_TAG)
    if tagged:
        match = [c for c in children if c.info.run_id == tagged and c.info.status in ACCEPTED_BEST_STATUSES]
        if not match:
            raise StepError(
                f"parent run {pid} names best_run_id={tagged}, which is not a finished child run of it"
            )
        return match[0]
    metric, mode = search_metric(parent)
    scored = [c for c in finished if math.isfinite(c.data.metrics.get(metric, math.nan))]
    if not scored:
        raise StepError(f"no FINISHED child run of parent {pid} logged the search metric {metric!r}")
    sign = 1 if mode == "min" else -1
    return min(scored, key=lambda c: (sign * c.data.metrics[metric], c.info.start_time or 0))


def require_model_artifact(client, run, artifact_path: str) -> None:
    """The run must have an MLflow model (an MLmodel file) at `artifact_path`."""
    try:
        files = [a.path for a in client.list_artifacts(run.info.run_id, artifact_path)]
    except Exception as exc:  # stores raise various types for a missing path
        raise StepError(f"cannot list artifacts of run {run.info.run_id}: {exc}") from None
    if f"{artifact_path}/MLmodel" not in files:
        raise StepError(
            f"best child run {run.info.run_id} has no model artifact at '{artifact_path}' "
            "(expected an MLflow model logged by shared.model_package.log_model)"
        )
