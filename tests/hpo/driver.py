"""The hpo step as a subprocess of a test: its environment, and stopping it mid-search by a signal
(Ctrl-C, a pod's SIGTERM or SIGKILL), with Ray's processes of the dead driver gone as at a pod's end."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def step_env(tracking_uri: str, experiment: str) -> dict[str, str]:
    """The test's environment with MLflow pointed at `tracking_uri`/`experiment` and the repo importable."""
    return {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_EXPERIMENT_NAME": experiment,
        "PYTHONPATH": str(ROOT),
    }


def signal_when(
    argv: list[str],
    env: dict[str, str],
    ready: Callable[[], bool],
    sig: int,
    log: Path,
    *,
    timeout: float = 300,
    poll: float = 0.5,
    settle: float = 0.0,
) -> subprocess.Popen:
    """Start the step (stdout and stderr to `log`), send `sig` once `ready()` holds (after `settle`
    more seconds, e.g. for Tune to save its state), and return it once it has ended.

    Fails if the step ends before it could be signalled. Whatever happens, the step's process
    group (its own session: the local Ray's processes) is killed afterwards.
    """
    with open(log, "wb") as out:
        driver = subprocess.Popen(argv, cwd=ROOT, env=env, start_new_session=True, stdout=out, stderr=out)
    deadline = time.monotonic() + timeout
    try:
        while driver.poll() is None and time.monotonic() < deadline:
            if ready():
                time.sleep(settle)
                break
            time.sleep(poll)
        assert driver.poll() is None, "the search ended before it could be interrupted"
        os.kill(driver.pid, sig)
        driver.wait(timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        try:
            os.killpg(driver.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return driver


def tune_saved_since(storage: Path, since: float) -> bool:
    """Tune has written its experiment state (`experiment_state-*.json` under `storage`, what a
    resume reads) after `since` (a `time.time()`): poll this instead of sleeping for its period."""
    for path in Path(storage).rglob("experiment_state-*.json"):
        try:
            if path.stat().st_mtime > since:
                return True
        except FileNotFoundError:  # replaced while listed
            continue
    return False


class SavedAfter:
    """A `ready()` for `signal_when`: `event()` has held, and Tune saved its state after it was seen."""

    def __init__(self, event: Callable[[], bool], storage: Path):
        self.event, self.storage, self.seen_at = event, Path(storage), None

    def __call__(self) -> bool:
        if self.seen_at is None and self.event():
            self.seen_at = time.time()
        return self.seen_at is not None and tune_saved_since(self.storage, self.seen_at)


def trial_record(tracking_uri: str, experiment: str, parent_run_id: str | None = None) -> dict[tuple, dict]:
    """Per trial (by its configuration: trial ids differ between searches): status and per-epoch
    metrics; the trials of one parent run when given."""
    from mlflow.tracking import MlflowClient

    from steps.hpo.tracking import TRIAL_ID_TAG

    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return {}
    query = "tags.hpo_role = 'trial'"
    if parent_run_id:
        query += f" and tags.mlflow.parentRunId = '{parent_run_id}'"
    out = {}
    for run in client.search_runs([found.experiment_id], query, max_results=500):
        index = tuple(sorted(run.data.params.items()))
        metrics = {}
        for key in ("train_loss", "val_loss", "val_accuracy"):
            history = client.get_metric_history(run.info.run_id, key)
            metrics[key] = [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)]
        out[index] = {"trial": run.data.tags[TRIAL_ID_TAG], "status": run.info.status, "metrics": metrics}
    return out


def trial_epochs(record: dict[tuple, dict]) -> int:
    """Trial-epochs a search spent: the validation results its trials recorded."""
    return sum(len(r["metrics"]["val_loss"]) for r in record.values())


def assert_same_decisions(got: dict[tuple, dict], expected: dict[tuple, dict]) -> None:
    """The same configurations, each stopped at the same rung with the same per-epoch metrics."""
    import pytest

    assert sorted(got) == sorted(expected), "the same configurations"
    for index, want in expected.items():
        assert got[index]["status"] == want["status"], f"trial {index}: stopped at another rung"
        for key, values in want["metrics"].items():
            assert [s for s, _ in got[index]["metrics"][key]] == [s for s, _ in values], f"{index} {key}"
            assert [v for _, v in got[index]["metrics"][key]] == pytest.approx(
                [v for _, v in values], rel=1e-6, abs=1e-7
            ), f"trial {index} {key}"
    assert trial_epochs(got) == trial_epochs(expected)
