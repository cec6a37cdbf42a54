"""`{{...}}` substitution, as Argo does it before a task runs.

`{{name}}` is a variable; `{{=expr}}` is an expr-lang expression (`exprlang`) over the same
variables, nested (`steps['a'].outputs.result`), its value rendered as Argo renders it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from pipelines.local_runner.errors import WorkflowError

PLACEHOLDER = re.compile(r"\{\{\s*([^{}=][^{}]*?)\s*\}\}")


def expression_spans(text: str) -> Iterator[tuple[int, int, str]]:
    """(start, end, expression) of each `{{=...}}` in text; braces inside the expression may nest."""
    pos = 0
    while True:
        start = text.find("{{=", pos)
        if start < 0:
            return
        depth, i, quote = 0, start + 3, ""
        while i < len(text):
            ch = text[i]
            if quote:
                if ch == "\\":
                    i += 1
                elif ch == quote:
                    quote = ""
            elif ch in "'\"`":
                quote = ch
            elif ch == "{":
                depth += 1
            elif ch == "}":
                if depth == 0 and text.startswith("}}", i):
                    yield start, i + 2, text[start + 3 : i]
                    break
                depth -= 1
            i += 1
        else:
            raise WorkflowError(f"unterminated expression in {text!r}")
        pos = i + 2


def references(text: str) -> list[str]:
    """The variable names used in `text` (`{{ tasks.a.outputs.result }}` -> `tasks.a.outputs.result`)."""
    return PLACEHOLDER.findall(text)


def expressions(text: str) -> list[str]:
    return [expr for _, _, expr in expression_spans(text)]


def _expression_value(expr: str, variables: Mapping[str, str], where: str) -> str:
    from pipelines.local_runner.exprlang import ExprError, evaluate, go_string, nest

    try:
        value = evaluate(expr, nest(variables))
    except ExprError as exc:
        raise WorkflowError(f"{where}: {exc}") from None
    if value is None:
        raise WorkflowError(f"{where}: expression {{{{={expr.strip()}}}}} evaluated to nil")
    return go_string(value)


def substitute(text: str, variables: Mapping[str, str], where: str) -> str:
    """Replace every `{{name}}` and `{{=expr}}`; an unknown name is an error naming `where`."""
    if "{{=" in text:
        parts, pos = [], 0
        for start, end, expr in list(expression_spans(text)):
            parts += [text[pos:start], _expression_value(expr, variables, where)]
            pos = end
        text = "".join(parts) + text[pos:]

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in variables:
            return variables[name]
        raise WorkflowError(f"{where}: cannot resolve {match.group(0)}")

    return PLACEHOLDER.sub(replace, text)


def substitute_known(value: Any, variables: Mapping[str, str]) -> Any:
    """Replace only the names in `variables` (e.g. `item`) inside a nested structure; leave the rest."""
    if isinstance(value, str):
        return PLACEHOLDER.sub(lambda m: variables.get(m.group(1), m.group(0)), value)
    if isinstance(value, list):
        return [substitute_known(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: substitute_known(v, variables) for k, v in value.items()}
    return value


def substitute_tree(value: Any, variables: Mapping[str, str], where: str) -> Any:
    """Substitute inside every string of a nested structure of dicts and lists."""
    if isinstance(value, str):
        return substitute(value, variables, where)
    if isinstance(value, list):
        return [substitute_tree(v, variables, where) for v in value]
    if isinstance(value, dict):
        return {k: substitute_tree(v, variables, where) for k, v in value.items()}
    return value
