"""Argo templates from step contracts: arguments checked against the `Input` model when compiling,
output parameters taken from the `Result` model, one retry rule for the failure policy.

A template says which workflow parameter or path feeds which field of the step's `Input`; the
flag is the field's name in kebab case, and a workflow parameter feeding a field carries that same
name (`pipelines.parameters` records which fields each parameter feeds, and `workflow_fields`
refuses a parameter that does not feed the field). A field that is not a field of the step, or
a required field nobody feeds, fails the compile, not the run.
"""

from __future__ import annotations

from collections.abc import Mapping

from hera.workflows import Artifact, Parameter, RetryStrategy
from hera.workflows.models import Backoff, ValueFrom
from pydantic import BaseModel

from pipelines import parameters
from shared.errors import EXIT_TRANSIENT
from shared.step_cli import RESULT_DIR_FLAG, cli_fields, flag_name

RESULT_DIR = "/tmp/result"

# The failure policy (shared/errors.py) as an Argo retry rule: a transient fault (exit 75) and a
# pod-level error (eviction, node loss: status Error) are retried with backoff; bad input (exit 2)
# and bugs (exit 1) are not. The local runner evaluates the same expression.
RETRY_EXPRESSION = f"lastRetry.status == 'Error' || asInt(lastRetry.exitCode) == {EXIT_TRANSIENT}"


class ContractError(ValueError):
    """A template that does not match its step's contract (raised while compiling)."""


def wp(name: str) -> str:
    """`{{workflow.parameters.<name>}}`, checked against the declared parameters."""
    if name not in parameters.BY_NAME:
        raise ContractError(f"no workflow parameter {name!r}")
    return f"{{{{workflow.parameters.{name}}}}}"


def workflow_fields(model: type[BaseModel], *fields: str) -> dict[str, str]:
    """`{field: {{workflow.parameters.<field-kebab>}}}` for fields fed by a workflow parameter."""
    out = {}
    for field in fields:
        name = flag_name(field)
        spec = parameters.BY_NAME.get(name)
        if spec is None or (model, field) not in spec.feeds:
            raise ContractError(
                f"workflow parameter {name!r} is not declared as feeding {model.__name__}.{field} "
                "(pipelines/parameters.py)"
            )
        out[field] = wp(name)
    return out


def cli_args(
    model: type[BaseModel], values: Mapping[str, str], *, fed_elsewhere: tuple[str, ...] = ()
) -> list[str]:
    """The step's command-line arguments for `values` (field -> value), checked against `model`.

    `fed_elsewhere` names required fields that another component adds (e.g. the RayJob's paths).
    """
    fields = cli_fields(model)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ContractError(f"{model.__name__} has no field(s) {', '.join(unknown)}")
    unknown_elsewhere = sorted(set(fed_elsewhere) - set(fields))
    if unknown_elsewhere:
        raise ContractError(f"{model.__name__} has no field(s) {', '.join(unknown_elsewhere)}")
    fed = set(values) | set(fed_elsewhere)
    missing = sorted(n for n, info in fields.items() if info.is_required() and n not in fed)
    if missing:
        raise ContractError(f"{model.__name__}: required field(s) {', '.join(missing)} are not fed")
    return [item for field, value in values.items() for item in (f"--{flag_name(field)}", value)]


def result_args() -> list[str]:
    return [f"--{RESULT_DIR_FLAG}", "{{outputs.artifacts.result.path}}"]


def result_outputs(result: type[BaseModel]) -> list:
    """The `result` artifact plus one output parameter per field of the step's `Result`."""
    return [Artifact(name="result", path=RESULT_DIR)] + [
        Parameter(name=flag_name(f), value_from=ValueFrom(path=f"{RESULT_DIR}/{flag_name(f)}"))
        for f in result.model_fields
    ]


def retry(limit: int, *, duration: str = "30s") -> RetryStrategy:
    """Retry transient faults and pod errors with exponential backoff; never bad input or bugs."""
    return RetryStrategy(
        limit=limit,
        retry_policy="Always",
        expression=RETRY_EXPRESSION,
        backoff=Backoff(duration=duration, factor=2, max_duration="15m"),
    )
