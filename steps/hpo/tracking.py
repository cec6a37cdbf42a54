"""MLflow record of a search: one parent run, one nested child run per trial, truthful statuses.

All MLflow calls happen on the driver (a Ray Tune callback), so trials need no MLflow access
and a crashed trial still gets its run closed. Child runs are keyed by Tune's trial id: after
`--resume` an existing child run is reused, never duplicated.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from mlflow.entities import Metric, Param, RunStatus
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME
from ray.tune import Callback

from shared.mlflow_contract import ROLE_PARENT, ROLE_TAG, ROLE_TRIAL, TRIAL_ID_TAG
from steps.hpo.trainable import NUM_EPOCHS, TIME_ATTR

log = logging.getLogger(__name__)

EPOCH_METRICS = (
    "train_loss",
    "val_loss",
    "val_accuracy",
    "val_f1_macro",
    "epoch_seconds",
    "samples_per_second",
)
_MAX_TAG_CHARS = 4000

FINISHED = RunStatus.to_string(RunStatus.FINISHED)
KILLED = RunStatus.to_string(RunStatus.KILLED)
FAILED = RunStatus.to_string(RunStatus.FAILED)
RUNNING = RunStatus.to_string(RunStatus.RUNNING)


def outcome(last_result: dict[str, Any] | None, max_epochs: int, errored: bool) -> str:
    """FAILED if it crashed, FINISHED if it ran all its epochs, else KILLED (stopped by ASHA)."""
    if errored:
        return FAILED
    last_result = last_result or {}
    target = int(last_result.get(NUM_EPOCHS) or max_epochs)
    return FINISHED if int(last_result.get(TIME_ATTR) or 0) >= target else KILLED


def create_parent_run(
    client: MlflowClient, experiment_id: str, run_name: str, tags: dict[str, str], params: dict[str, Any]
) -> str:
    run = client.create_run(experiment_id, run_name=run_name, tags={**tags, ROLE_TAG: ROLE_PARENT})
    client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
    return run.info.run_id


class MlflowTrialCallback(Callback):
    """Mirrors each Tune trial into a child run of `parent_run_id`."""

    def __init__(
        self,
        tracking_uri: str,
        experiment_id: str,
        parent_run_id: str,
        max_epochs: int,
        tags: dict[str, str],
    ) -> None:
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.max_epochs = max_epochs
        self.tags = dict(tags)
        self.client = MlflowClient(tracking_uri)
        self.runs: dict[str, str] = {}
        self.logged: dict[str, set[int]] = {}  # run id -> epochs already logged (a resumed trial replays)

    # Tune pickles callbacks into the experiment state; the client is rebuilt on load.
    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "client"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.client = MlflowClient(self.tracking_uri)

    def existing_children(self) -> dict[str, str]:
        """trial_id -> run_id of this parent's child runs already in MLflow."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.{MLFLOW_PARENT_RUN_ID} = '{self.parent_run_id}'",
            max_results=5000,
        )
        found: dict[str, str] = {}
        for run in sorted(runs, key=lambda r: r.info.start_time or 0):
            trial_id = run.data.tags.get(TRIAL_ID_TAG)
            if trial_id and trial_id not in found:
                found[trial_id] = run.info.run_id
        return found

    def child_run(self, trial_id: str, name: str, config: dict[str, Any]) -> str:
        """The child run for `trial_id`: reused if it exists (resume, retry), created otherwise."""
        if trial_id in self.runs:
            return self.runs[trial_id]
        existing = self.existing_children().get(trial_id)
        if existing:
            self.client.update_run(existing, status=RUNNING)
            self.runs[trial_id] = existing
            history = self.client.get_metric_history(existing, EPOCH_METRICS[1])
            self.logged[existing] = {m.step for m in history}
            return existing
        tags = {
            **self.tags,
            MLFLOW_PARENT_RUN_ID: self.parent_run_id,
            MLFLOW_RUN_NAME: name,
            TRIAL_ID_TAG: trial_id,
            ROLE_TAG: ROLE_TRIAL,
        }
        run_id = self.client.create_run(self.experiment_id, run_name=name, tags=tags).info.run_id
        self.client.log_batch(run_id, params=[Param(k, str(v)) for k, v in sorted(config.items())])
        self.runs[trial_id] = run_id
        return run_id

    def log_epoch(self, trial_id: str, name: str, config: dict[str, Any], result: dict[str, Any]) -> None:
        run_id = self.child_run(trial_id, name, config)
        step = int(result.get(TIME_ATTR) or 0)
        logged = self.logged.setdefault(run_id, set())
        if step in logged:  # an epoch redone from the last snapshot: its metrics are recorded
            return
        logged.add(step)
        now = int(time.time() * 1000)
        metrics = [
            Metric(key, float(result[key]), now, step)
            for key in EPOCH_METRICS
            if key in result and isinstance(result[key], (int, float)) and math.isfinite(result[key])
        ]
        if metrics:
            self.client.log_batch(run_id, metrics=metrics)

    def close(
        self,
        trial_id: str,
        name: str,
        config: dict[str, Any],
        last_result: dict[str, Any] | None,
        error: str | None,
    ) -> str:
        """Set the child run's final status (and error tag); returns the status."""
        run_id = self.child_run(trial_id, name, config)
        status = outcome(last_result, self.max_epochs, error is not None)
        if error is not None:
            self.client.set_tag(run_id, "error", error[-_MAX_TAG_CHARS:])
        self.client.set_terminated(run_id, status=status)
        return status

    # --- Tune hooks (driver side) ---
    def on_trial_start(self, iteration, trials, trial, **info):
        self.child_run(trial.trial_id, str(trial), trial.config)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.log_epoch(trial.trial_id, str(trial), trial.config, result)

    def on_trial_complete(self, iteration, trials, trial, **info):
        if not (trial.last_result or {}).get("done"):
            # stopped because the search was interrupted: not an outcome; a resume reopens it
            if trial.trial_id in self.runs:
                self.client.set_terminated(self.runs[trial.trial_id], status=KILLED)
            return
        status = self.close(trial.trial_id, str(trial), trial.config, trial.last_result, None)
        log.info("trial %s: %s", trial.trial_id, status)

    def on_trial_recover(self, iteration, trials, trial, **info):
        run_id = self.child_run(trial.trial_id, str(trial), trial.config)
        self.client.set_tag(run_id, "retries", str(trial.num_failures))

    def on_trial_error(self, iteration, trials, trial, **info):
        self.close(trial.trial_id, str(trial), trial.config, trial.last_result, trial_error(trial))


def trial_error(trial: Any) -> str:
    """The trial's error text (Tune keeps it in a file), or a placeholder naming the trial."""
    try:
        err = trial.get_error()
    except Exception:  # the error file may be gone after a resume
        err = None
    return str(err) if err else f"trial {trial.trial_id} failed"
