"""A run's persisted state: `<run dir>/state.json`, rewritten atomically after every change."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipelines.local_runner.errors import WorkflowError
from shared.results import atomic_write_text

PENDING, RUNNING, RETRYING = "pending", "running", "retrying"
RUN_RUNNING, RUN_SUCCEEDED, RUN_FAILED, RUN_INTERRUPTED = "running", "succeeded", "failed", "interrupted"


@dataclass
class TaskState:
    phase: str = PENDING
    attempts: int = 0
    exit_code: int | None = None
    message: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    cache_key: str | None = None
    parameters: dict[str, str] = field(default_factory=dict)  # output parameters
    artifacts: dict[str, str] = field(default_factory=dict)  # output artifact -> local path
    result: str | None = None  # stdout, Argo's outputs.result

    @property
    def duration(self) -> float | None:
        if self.started_at is None:
            return None
        return (self.finished_at or time.time()) - self.started_at


@dataclass
class RunState:
    run_id: str
    workflow: str
    workflow_name: str
    workflow_uid: str
    parameters: dict[str, str]
    created_at: float = field(default_factory=time.time)
    phase: str = RUN_RUNNING
    finished_at: float | None = None
    tasks: dict[str, TaskState] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> RunState:
        data = json.loads(text)
        tasks = {name: TaskState(**t) for name, t in data.pop("tasks").items()}
        return cls(**data, tasks=tasks)


class StateStore:
    """Owns the state file of one run; safe to update from task threads."""

    def __init__(self, run_dir: Path, state: RunState):
        self.path = Path(run_dir) / "state.json"
        self.state = state
        self.lock = threading.RLock()

    def save(self) -> None:
        with self.lock:
            atomic_write_text(self.path, self.state.to_json())

    def update_task(self, name: str, **changes) -> TaskState:
        with self.lock:
            task = self.state.tasks.setdefault(name, TaskState())  # nodes appear as the run unfolds
            for key, value in changes.items():
                setattr(task, key, value)
            self.save()
            return task


def load_state(run_dir: Path) -> RunState:
    path = Path(run_dir) / "state.json"
    if not path.is_file():
        raise WorkflowError(f"no run state at {path}")
    return RunState.from_json(path.read_text())


def latest_run(runs_dir: Path) -> str:
    """The id of the most recently created run under `runs_dir`."""
    runs = []
    for state_file in Path(runs_dir).glob("*/state.json"):
        try:
            runs.append((json.loads(state_file.read_text())["created_at"], state_file.parent.name))
        except (OSError, ValueError, KeyError):
            continue
    if not runs:
        raise WorkflowError(f"no runs to resume under {runs_dir}")
    return max(runs)[1]
