"""`{{...}}` substitution, as Argo does it before a task runs."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pipelines.local_runner.errors import WorkflowError

PLACEHOLDER = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")


def references(text: str) -> list[str]:
    """The variable names used in `text` (`{{ tasks.a.outputs.result }}` -> `tasks.a.outputs.result`)."""
    return PLACEHOLDER.findall(text)


def substitute(text: str, variables: Mapping[str, str], where: str) -> str:
    """Replace every `{{name}}` with its value; an unknown name is an error naming `where`."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in variables:
            return variables[name]
        if name.startswith("="):
            raise WorkflowError(f"{where}: expression templates ({match.group(0)}) are not supported locally")
        raise WorkflowError(f"{where}: cannot resolve {match.group(0)}")

    return PLACEHOLDER.sub(replace, text)


def substitute_tree(value: Any, variables: Mapping[str, str], where: str) -> Any:
    """Substitute inside every string of a nested structure of dicts and lists."""
    if isinstance(value, str):
        return substitute(value, variables, where)
    if isinstance(value, list):
        return [substitute_tree(v, variables, where) for v in value]
    if isinstance(value, dict):
        return {k: substitute_tree(v, variables, where) for k, v in value.items()}
    return value
