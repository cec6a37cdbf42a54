"""The search's progress in trial epochs, and its status line (a Ray Tune callback, driver side).

`N/M`: N = epochs the trials have reported, M = the most epochs the search can still run.
M starts at `num_samples * max_epochs`; a trial that asks for fewer epochs (`num_epochs` in its
config) gives back the difference when it reports its `num_epochs`, and a trial that ends early
(stopped by ASHA, or failed for good) gives back the epochs it will never run. So M only
shrinks, N only grows, and at the end N = M.

The status line names the trials running / done / stopped early / failed and the best
validation accuracy so far with its trial.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ray.tune import Callback

from shared.progress import NO_PROGRESS, Progress
from steps.hpo.trainable import NUM_EPOCHS, TIME_ATTR

RUNNING, DONE, STOPPED, FAILED = "running", "done", "stopped early", "failed"
ACCURACY = "val_accuracy"


@dataclass
class _Trial:
    epochs: int = 0  # epochs reported (the trial's own epoch counter, continued after a restore)
    num_epochs: int | None = None  # epochs the trial means to run, once it said so
    state: str = RUNNING


class SearchProgress:
    """Counts trial epochs into a `Progress`; pure bookkeeping, no Ray needed (unit-testable)."""

    def __init__(self, progress: Progress, num_samples: int, max_epochs: int) -> None:
        self.progress = progress
        self.num_samples = num_samples
        self.max_epochs = max_epochs
        self.trials: dict[str, _Trial] = {}
        self.best: tuple[float, str, int] | None = None  # (val_accuracy, trial id, epoch)
        self.progress.update(total=self.total())
        self.progress.status(self.status_line())

    def _trial(self, trial_id: str) -> _Trial:
        return self.trials.setdefault(trial_id, _Trial())

    def done(self) -> int:
        return sum(t.epochs for t in self.trials.values())

    def total(self) -> int:
        """The most epochs the search can still have run when it ends."""
        unseen = max(0, self.num_samples - len(self.trials))
        total = unseen * self.max_epochs
        for t in self.trials.values():
            if t.state != RUNNING:
                total += t.epochs
            else:
                total += max(t.epochs, min(t.num_epochs or self.max_epochs, self.max_epochs))
        return total

    def started(self, trial_id: str) -> None:
        trial = self._trial(trial_id)
        trial.state = RUNNING
        self.report()

    def result(self, trial_id: str, result: dict[str, Any]) -> None:
        trial = self._trial(trial_id)
        trial.state = RUNNING
        epoch = int(result.get(TIME_ATTR) or 0)
        trial.epochs = max(trial.epochs, epoch)
        if result.get(NUM_EPOCHS):
            trial.num_epochs = int(result[NUM_EPOCHS])
        accuracy = result.get(ACCURACY)
        if isinstance(accuracy, (int, float)) and math.isfinite(accuracy):
            if self.best is None or accuracy > self.best[0]:
                self.best = (float(accuracy), trial_id, epoch)
        self.report()

    def ended(self, trial_id: str, *, failed: bool = False) -> None:
        trial = self._trial(trial_id)
        if failed:
            trial.state = FAILED
        else:
            target = min(trial.num_epochs or self.max_epochs, self.max_epochs)
            trial.state = DONE if trial.epochs >= target else STOPPED
        self.report()

    def count(self, state: str) -> int:
        return sum(1 for t in self.trials.values() if t.state == state)

    def status_line(self) -> str:
        waiting = max(0, self.num_samples - len(self.trials))
        parts = [
            f"trials: {self.count(RUNNING)} running",
            f"{self.count(DONE)} done",
            f"{self.count(STOPPED)} stopped early",
            f"{self.count(FAILED)} failed",
        ]
        if waiting:
            parts.append(f"{waiting} waiting")
        line = ", ".join(parts)
        if self.best is not None:
            accuracy, trial_id, epoch = self.best
            line += f" | best val_accuracy {accuracy:.4f} (trial {trial_id}, epoch {epoch})"
        return line

    def report(self) -> None:
        self.progress.update(done=self.done(), total=self.total())
        self.progress.status(self.status_line())


# The driver's live progress. A restored search's callbacks are unpickled from the experiment
# (tuner.pkl) and cannot be handed a new one; they report here, which `run_search` sets first.
_driver_progress: Progress = NO_PROGRESS


def attach_driver_progress(progress: Progress) -> None:
    global _driver_progress
    _driver_progress = progress


class ProgressCallback(Callback):
    """Feeds Tune's trial events into `SearchProgress` (runs in the driver, like the MLflow one).

    Its counts are saved with Tune's experiment snapshot (`get_state`) and restored with it, so a
    resumed search goes on counting from the epochs already done."""

    def __init__(self, progress: Progress, num_samples: int, max_epochs: int) -> None:
        self.num_samples, self.max_epochs = num_samples, max_epochs
        self.search = SearchProgress(progress, num_samples, max_epochs)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["search"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.search = SearchProgress(_driver_progress, self.num_samples, self.max_epochs)

    def get_state(self) -> dict[str, Any]:
        search = self.search
        return {
            "trials": {k: [t.epochs, t.num_epochs, t.state] for k, t in search.trials.items()},
            "best": list(search.best) if search.best else None,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        search = self.search
        search.trials = {k: _Trial(*v) for k, v in (state.get("trials") or {}).items()}
        search.best = tuple(state["best"]) if state.get("best") else None
        search.report()

    def on_trial_start(self, iteration, trials, trial, **info):
        self.search.started(trial.trial_id)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.search.result(trial.trial_id, result)

    def on_trial_complete(self, iteration, trials, trial, **info):
        if (trial.last_result or {}).get("done"):  # not a trial stopped by an interruption
            self.search.ended(trial.trial_id)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.search.ended(trial.trial_id, failed=True)


def mlflow_run_url(tracking_uri: str, experiment_id: str, run_id: str) -> str | None:
    """The MLflow UI page of a run, for a tracking server (http/https); None for a local store."""
    if not tracking_uri.startswith(("http://", "https://")):
        return None
    return f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def report_links(
    progress: Progress, tracking_uri: str, experiment_id: str, parent_run_id: str, dashboard_url: str | None
) -> None:
    """The search's parent run in MLflow and the Ray dashboard, as soon as both exist."""
    url = mlflow_run_url(tracking_uri, experiment_id, parent_run_id)
    if url is None:  # a SQLite or file store: no server until someone starts the UI
        url = (
            f"`make mlflow-ui` (or `mlflow ui --backend-store-uri {tracking_uri}`), then open "
            f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs/{parent_run_id}"
        )
    progress.link("mlflow parent run", url)
    if dashboard_url:
        scheme = "" if "://" in dashboard_url else "http://"
        progress.link("ray dashboard", f"{scheme}{dashboard_url}")
