"""Argo loops: `withItems`, `withParam` and `withSequence` expand a step or task into one child per item.

Each child gets `{{item}}` (and `{{item.key}}` for a map item) substituted into its spec and is named
`name(index:label)` as in Argo. The loop's outputs aggregate the children's: `outputs.result` and
`outputs.parameters.P` are JSON lists, in item order.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from pipelines.local_runner.errors import WorkflowError
from pipelines.local_runner.exprlang import go_string
from pipelines.local_runner.substitution import substitute, substitute_known

LOOP_KEYS = ("withItems", "withParam", "withSequence")


def is_loop(spec: Mapping) -> bool:
    return any(key in spec for key in LOOP_KEYS)


def _sequence(seq: Mapping, variables: Mapping[str, str], where: str) -> list[str]:
    def number(key: str) -> int | None:
        if seq.get(key) in (None, ""):
            return None
        text = substitute(str(seq[key]), variables, f"{where} withSequence.{key}").strip()
        try:
            return int(text)
        except ValueError:
            raise WorkflowError(f"{where}: withSequence.{key} {text!r} is not an integer") from None

    count, start, end = number("count"), number("start"), number("end")
    if count is not None and end is not None:
        raise WorkflowError(f"{where}: withSequence takes count or end, not both")
    start = start or 0
    if count is not None:
        values = list(range(start, start + count))
    elif end is not None:
        values = list(range(start, end + 1)) if end >= start else list(range(start, end - 1, -1))
    else:
        raise WorkflowError(f"{where}: withSequence needs count or end")
    fmt = seq.get("format")
    return [_go_format(fmt, v) if fmt else str(v) for v in values]


def _go_format(fmt: str, value: int) -> str:
    try:
        return fmt.replace("%d", "%d") % value
    except (TypeError, ValueError):
        raise WorkflowError(f"withSequence.format {fmt!r} is not a printf format for one integer") from None


def items_of(spec: Mapping, variables: Mapping[str, str], where: str) -> list[Any]:
    if "withItems" in spec:
        return list(spec["withItems"] or [])
    if "withParam" in spec:
        text = substitute(str(spec["withParam"]), variables, f"{where} withParam")
        try:
            items = json.loads(text)
        except ValueError:
            raise WorkflowError(f"{where}: withParam is not a JSON list: {text[:200]!r}") from None
        if not isinstance(items, list):
            raise WorkflowError(f"{where}: withParam is not a JSON list: {text[:200]!r}")
        return items
    return _sequence(spec["withSequence"], variables, where)


def item_variables(item: Any) -> dict[str, str]:
    """`item` and, for a map, `item.key` (nested maps too), rendered as Argo renders them."""
    found = {"item": item if isinstance(item, str) else go_string(item)}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                found[f"{prefix}.{key}"] = sub if isinstance(sub, str) else go_string(sub)
                walk(f"{prefix}.{key}", sub)

    walk("item", item)
    return found


def expand(spec: Mapping, variables: Mapping[str, str], where: str) -> list[tuple[str, dict, dict]]:
    """[(child name, child spec, item variables)] for a looped step/task `spec`."""
    items = items_of(spec, variables, where)
    body = {k: copy.deepcopy(v) for k, v in spec.items() if k not in LOOP_KEYS}
    children = []
    for index, item in enumerate(items):
        values = item_variables(item)
        child = substitute_known(body, values)
        label = values["item"]
        children.append((f"{spec['name']}({index}:{label})", child, values))
    return children


def aggregate_outputs(results: list[Any]) -> tuple[str | None, dict[str, str]]:
    """The loop's outputs.result and outputs.parameters.P from its children's, as JSON lists."""
    texts = [r.result for r in results if r.result is not None]
    result = json.dumps([_maybe_json(t) for t in texts], separators=(",", ":")) if texts else None
    names: list[str] = []
    for r in results:
        names += [n for n in r.parameters if n not in names]
    params = {n: json.dumps([r.parameters.get(n) for r in results if n in r.parameters]) for n in names}
    return result, params


def _maybe_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text
