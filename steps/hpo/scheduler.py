"""ASHA whose decisions survive a resume, and an order of trials that does not depend on one.

Tune saves the searcher's and the callbacks' state with every experiment snapshot, but not the
scheduler's: `Tuner.restore` brings back the scheduler pickled when the search started, so
ASHA's rungs are empty and trials it had stopped, or would stop, run on (ray-project/ray#30838).
`ResumableASHA` keeps every event it was given (trial added, result, completion, removal) and
`SchedulerStateCallback` saves that journal in the same snapshot as the trials; on restore the
journal is replayed into a fresh `ASHAScheduler` through its public methods, so the rungs are
exactly what they were when the trials were saved. Only public Tune interfaces are used.

The scheduler also starts waiting trials oldest first (Tune's FIFO order starts new trials before
restored ones), so a search run one trial at a time runs its trials in the same order after a resume.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from ray.tune import Callback
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

ADD, RESULT, COMPLETE, ERROR, REMOVE = "add", "result", "complete", "error", "remove"


class ResumableASHA(TrialScheduler):
    """`ASHAScheduler` (one bracket) with a replayable journal of what it was told."""

    def __init__(
        self,
        *,
        metric: str,
        mode: str,
        time_attr: str,
        max_t: int,
        grace_period: int,
        reduction_factor: float,
    ) -> None:
        self.search_metric, self.search_mode, self.time_attr = metric, mode, time_attr
        self.asha_config = {
            "time_attr": time_attr,
            "max_t": max_t,
            "grace_period": grace_period,
            "reduction_factor": reduction_factor,
        }
        self._reset([])

    @property
    def metric(self) -> str:
        return self.search_metric

    @property
    def mode(self) -> str:
        return self.search_mode

    # --- state ---
    def _reset(self, events: list[list[Any]]) -> None:
        self.events: list[list[Any]] = []
        self.decisions: dict[str, str] = {}  # "<trial id>@<time>" -> CONTINUE/STOP, as first decided
        self.known: set[str] = set()
        self.asha = ASHAScheduler(**self.asha_config)
        self.asha.set_search_properties(self.search_metric, self.search_mode)
        for kind, trial_id, *rest in events:
            self._apply(kind, SimpleNamespace(trial_id=trial_id), *rest)

    def get_state(self) -> dict[str, Any]:
        return {"events": [list(e) for e in self.events]}

    def set_state(self, state: dict[str, Any]) -> None:
        self._reset(state.get("events") or [])

    def stopped(self) -> set[str]:
        """Trial ids ASHA stopped early."""
        return {key.rsplit("@", 1)[0] for key, d in self.decisions.items() if d == TrialScheduler.STOP}

    def _apply(self, kind: str, trial: Any, *args: Any) -> str | None:
        """Record one event and hand it to ASHA; the decision for a result."""
        trial_id = trial.trial_id
        if kind == ADD:
            if trial_id in self.known:  # a restored trial is added again: ASHA already has it
                return None
            self.known.add(trial_id)
            self.events.append([kind, trial_id])
            self.asha.on_trial_add(None, trial)
            return None
        if kind == RESULT:
            (result,) = args
            if self.time_attr not in result or self.search_metric not in result:
                return TrialScheduler.CONTINUE
            key = f"{trial_id}@{result[self.time_attr]}"
            if key in self.decisions:  # replayed epoch (restarted trial): the decision stands
                return self.decisions[key]
            if trial_id in self.stopped():  # stopped before the snapshot that restarted it
                return TrialScheduler.STOP
            small = {self.time_attr: result[self.time_attr], self.search_metric: result[self.search_metric]}
            self.events.append([kind, trial_id, small])
            decision = self.asha.on_trial_result(None, trial, small)
            self.decisions[key] = decision
            return decision
        self.events.append([kind, trial_id, *args])
        if kind == COMPLETE:
            (result,) = args
            if trial_id in self.known:
                self.asha.on_trial_complete(None, trial, result)
        elif kind == ERROR:
            self.asha.on_trial_error(None, trial)
        elif kind == REMOVE:
            self.asha.on_trial_remove(None, trial)
        return None

    # --- TrialScheduler ---
    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return metric in (None, self.search_metric) and mode in (None, self.search_mode)

    def on_trial_add(self, tune_controller, trial: Trial) -> None:
        self._apply(ADD, trial)

    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        return self._apply(RESULT, trial, result)

    def on_trial_complete(self, tune_controller, trial: Trial, result: dict) -> None:
        small = {k: result[k] for k in (self.time_attr, self.search_metric) if k in (result or {})}
        if len(small) == 2:
            self._apply(COMPLETE, trial, small)

    def on_trial_error(self, tune_controller, trial: Trial) -> None:
        self._apply(ERROR, trial)

    def on_trial_remove(self, tune_controller, trial: Trial) -> None:
        self._apply(REMOVE, trial)

    def choose_trial_to_run(self, tune_controller) -> Trial | None:
        """The oldest waiting trial (Tune lists trials as they were created), new or restored; Tune's
        FIFO would start every new trial before a restored one."""
        for trial in tune_controller.get_trials():
            if trial.status in (Trial.PENDING, Trial.PAUSED):
                return trial
        return None

    def debug_string(self) -> str:
        return f"Resumable {self.asha.debug_string()}"


class SchedulerStateCallback(Callback):
    """Saves the scheduler's journal in Tune's experiment snapshot and restores it from there."""

    def __init__(self, scheduler: ResumableASHA) -> None:
        self.scheduler = scheduler

    def get_state(self) -> dict[str, Any]:
        return self.scheduler.get_state()

    def set_state(self, state: dict[str, Any]) -> None:
        self.scheduler.set_state(state)
