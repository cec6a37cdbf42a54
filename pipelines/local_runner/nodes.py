"""A node's outcome and the variables Argo exposes about it (`steps.X.*` / `tasks.X.*`)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from pipelines.local_runner.depends import CACHED, ERRORED, FAILED, OMITTED, SKIPPED, SUCCEEDED
from pipelines.local_runner.state import TaskState

INTERRUPTED = "interrupted"
ARGO_PHASE = {
    SUCCEEDED: "Succeeded",
    CACHED: "Succeeded",
    FAILED: "Failed",
    ERRORED: "Error",
    SKIPPED: "Skipped",
    OMITTED: "Omitted",
    INTERRUPTED: "Failed",
}
BAD = (FAILED, ERRORED, INTERRUPTED)


@dataclass
class NodeResult:
    name: str
    phase: str
    message: str = ""
    exit_code: int | None = None
    parameters: dict[str, str] = field(default_factory=dict)
    result: str | None = None
    artifacts: dict[str, str] = field(default_factory=dict)  # name -> local path
    items: list[dict[str, str]] | None = None  # a loop's children's output parameters, in order
    started_at: float = field(default_factory=time.time)
    finished_at: float = field(default_factory=time.time)

    @classmethod
    def from_state(cls, name: str, task: TaskState) -> NodeResult:
        return cls(
            name=name,
            phase=task.phase,
            message=task.message,
            exit_code=task.exit_code,
            parameters=dict(task.parameters),
            result=task.result,
            artifacts=dict(task.artifacts),
            started_at=task.started_at or time.time(),
            finished_at=task.finished_at or time.time(),
        )

    @property
    def argo_phase(self) -> str:
        return ARGO_PHASE.get(self.phase, self.phase)

    @property
    def ok(self) -> bool:
        return self.phase not in BAD


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def node_variables(prefix: str, step: str, node: NodeResult) -> dict[str, str]:
    """`{prefix}.{step}.status`, `.exitCode`, `.outputs.*`, `.id`, `.startedAt`, ... for a finished node."""
    base = f"{prefix}.{step}"
    found = {
        f"{base}.status": node.argo_phase,
        f"{base}.id": node.name,
        f"{base}.startedAt": _iso(node.started_at),
        f"{base}.finishedAt": _iso(node.finished_at),
        f"{base}.hostNodeName": "localhost",
    }
    if node.exit_code is not None:
        found[f"{base}.exitCode"] = str(node.exit_code)
    if node.result is not None:
        found[f"{base}.outputs.result"] = node.result
    if node.items is not None:  # a loop: a JSON list of each item's parameters, as Argo gives it
        found[f"{base}.outputs.parameters"] = json.dumps(node.items)
    elif node.parameters:
        found[f"{base}.outputs.parameters"] = json.dumps(node.parameters)
    for name, value in node.parameters.items():
        found[f"{base}.outputs.parameters.{name}"] = value
    for name, path in node.artifacts.items():
        found[f"{base}.outputs.artifacts.{name}"] = path
    return found
