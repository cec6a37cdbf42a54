"""Argo `depends` / `dependencies` semantics for DAG tasks.

A plain `A` means `(A.Succeeded || A.Skipped || A.Daemoned)`, as in Argo. The older
`dependencies: [A, B]` list means `A && B`. A task runs once every task named in its expression
has finished and the expression is true; when it is false the task is *omitted*.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from pipelines.local_runner.errors import WorkflowError
from pipelines.local_runner.expressions import evaluate_bool

SUCCEEDED, FAILED, ERRORED, SKIPPED, OMITTED = "succeeded", "failed", "errored", "skipped", "omitted"
CACHED = "cached"  # a memoized hit: counts as Succeeded everywhere
FINISHED = {SUCCEEDED, FAILED, ERRORED, SKIPPED, OMITTED, CACHED}

_RESULTS = {
    "Succeeded": {SUCCEEDED, CACHED},
    "Failed": {FAILED},
    "Errored": {ERRORED},
    "Skipped": {SKIPPED},
    "Omitted": {OMITTED},
    "Daemoned": set(),
    "Completed": {SUCCEEDED, CACHED, FAILED},
    "AnySucceeded": {SUCCEEDED, CACHED},
    "AllFailed": {FAILED},
}
_PLAIN = {SUCCEEDED, CACHED, SKIPPED}
_OPERAND = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def depends_expression(task: Mapping) -> str | None:
    """The task's dependency expression, from `depends` or the older `dependencies` list."""
    if task.get("depends") and task.get("dependencies"):
        raise WorkflowError(f"task {task.get('name')!r} sets both depends and dependencies; use one")
    if task.get("depends"):
        return str(task["depends"])
    if task.get("dependencies"):
        return " && ".join(str(d) for d in task["dependencies"])
    return None


def split_operand(operand: str) -> tuple[str, str | None]:
    """`A.Succeeded` -> ("A", "Succeeded"); `A` -> ("A", None) (task names contain no dots)."""
    name, dot, result = operand.rpartition(".")
    if dot and result in _RESULTS:
        return name, result
    return operand, None


def referenced_tasks(expression: str | None) -> list[str]:
    """Task names an expression refers to, in order of appearance, without duplicates."""
    if not expression:
        return []
    names: list[str] = []
    for operand in _OPERAND.findall(expression):
        if operand in ("and", "or", "not", "true", "false"):
            continue
        name, _ = split_operand(operand)
        if name not in names:
            names.append(name)
    return names


def handles_failure(expression: str | None, task_name: str) -> bool:
    """Whether the expression explicitly reacts to `task_name` failing (so its failure is handled)."""
    if not expression:
        return False
    for operand in _OPERAND.findall(expression):
        name, result = split_operand(operand)
        if name == task_name and result in ("Failed", "Errored", "Completed", "AllFailed"):
            return True
    return False


def evaluate_depends(expression: str, phases: Mapping[str, str]) -> bool:
    """Evaluate `expression` given the finished tasks' phases (all referenced tasks must be finished)."""
    variables: dict[str, bool] = {}
    for operand in _OPERAND.findall(expression):
        if operand in ("and", "or", "not", "true", "false"):
            continue
        name, result = split_operand(operand)
        phase = phases[name]
        variables[operand] = phase in (_PLAIN if result is None else _RESULTS[result])
    return evaluate_bool(expression, variables, bare_words=False)
