"""A step's command line, generated from its contract's `Input` model (flag = field name in kebab case).

Each field becomes one `--kebab-name VALUE` option whose help is the field's description and
default. Values arrive as strings (as Argo passes them) and pydantic converts and checks them, so
every constraint lives on the model. Conventions:

- `""` means "not set" for a field that may be None (Argo cannot pass an absent value);
- a boolean flag may be given bare (`--resume`) or with a value (`--resume false`);
- a list field is repeated (`--required-splits train --required-splits validation`);
- a dict field takes JSON;
- a field marked `cli=False` (`Field(json_schema_extra={"cli": False})`) is not a flag.

Every step also takes `--result-dir`, where the result JSON and one file per `Result` field go.
Bad flags and invalid values exit 2 with one line naming each flag and its problem.
"""

from __future__ import annotations

import argparse
import enum
import json
import sys
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path, PurePath
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from shared.errors import EXIT_BAD_INPUT, StepError

I = TypeVar("I", bound=BaseModel)  # noqa: E741
RESULT_DIR_FLAG = "result-dir"


def flag_name(field: str) -> str:
    """The CLI flag (and workflow parameter) name of a field: snake_case -> kebab-case."""
    return field.replace("_", "-")


def field_name(flag: str) -> str:
    return flag.removeprefix("--").replace("-", "_")


def cli_fields(model: type[BaseModel]) -> dict[str, FieldInfo]:
    """The fields of `model` that are command-line flags."""
    return {
        name: info
        for name, info in model.model_fields.items()
        if not (isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get("cli") is False)
    }


def _args_of(annotation: Any) -> tuple[Any, ...]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def _kind(annotation: Any) -> str:
    """'bool', 'list', 'dict' or 'scalar' for a field annotation (Optional unwrapped)."""
    for arg in _args_of(annotation):
        if arg is type(None):
            continue
        origin = typing.get_origin(arg) or arg
        if origin is bool:
            return "bool"
        if origin in (list, tuple, set, frozenset):
            return "list"
        if origin is dict:
            return "dict"
    return "scalar"


def _metavar(name: str, annotation: Any) -> str:
    """What --help shows for a flag's value: INT, NUMBER, PATH, URI, JSON, one of an enum's values, TEXT."""
    for arg in _args_of(annotation):
        if arg is type(None):
            continue
        origin = typing.get_origin(arg) or arg
        if origin in (list, tuple, set, frozenset):
            inner = typing.get_args(arg)
            return _metavar(name, inner[0]) if inner else "TEXT"
        if isinstance(origin, type) and issubclass(origin, enum.Enum):
            return "|".join(str(m.value) for m in origin)
        if origin is typing.Literal:
            return "|".join(str(v) for v in typing.get_args(arg))
        if origin is dict:
            return "JSON"
        if origin is int:
            return "INT"
        if origin is float:
            return "NUMBER"
        if isinstance(origin, type) and issubclass(origin, PurePath):
            return "PATH"
    if name.endswith(("_uri", "_url", "_address")):
        return "URI"
    return "TEXT"


def _optional(annotation: Any) -> bool:
    return type(None) in _args_of(annotation)


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        sys.exit(EXIT_BAD_INPUT)


def build_parser(
    model: type[BaseModel], prog: str, description: str | None = None
) -> argparse.ArgumentParser:
    """An argparse parser with one option per CLI field of `model`, plus `--result-dir`."""
    parser = _OneLineParser(
        prog=prog,
        description=description or (model.__doc__ or "").strip(),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    for name, info in cli_fields(model).items():
        kind = _kind(info.annotation)
        help_text = info.description or ""
        if info.is_required():
            help_text += " (required)"
        elif "(default" not in help_text:  # a description may say what the default means already
            default = info.get_default(call_default_factory=True)
            help_text += f" (default: {default if default not in (None, '') else 'unset'})"
        metavar = _metavar(name, info.annotation)
        kwargs: dict[str, Any] = {"help": help_text.replace("%", "%%"), "dest": name, "metavar": metavar}
        if kind == "bool":
            kwargs.update(nargs="?", const="true", metavar="true|false")
        elif kind == "list":
            kwargs.update(action="append")
        parser.add_argument(f"--{flag_name(name)}", **kwargs)
    parser.add_argument(
        f"--{RESULT_DIR_FLAG}",
        dest="result_dir",
        type=Path,
        metavar="DIR",
        help="write result.json and one file per result field here",
    )
    return parser


def _coerce(model: type[BaseModel], raw: dict[str, Any]) -> dict[str, Any]:
    fields = model.model_fields
    values: dict[str, Any] = {}
    for name, value in raw.items():
        annotation = fields[name].annotation
        kind = _kind(annotation)
        if value == "" and _optional(annotation):
            value = None
        elif kind == "dict" and isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise StepError(f"--{flag_name(name)}: not valid JSON ({exc.msg})") from None
        values[name] = value
    return values


def describe_validation_error(exc: ValidationError) -> str:
    """Every problem of a validation error on one line, each naming its flag."""
    problems = []
    for err in exc.errors():
        loc = err.get("loc") or ()
        where = "--" + flag_name(str(loc[0])) + "".join(f"[{p}]" for p in loc[1:]) + ": " if loc else ""
        problems.append(where + err["msg"])
    return "; ".join(problems)


def validate_input(model: type[I], values: dict[str, Any]) -> I:
    """Build the Input model; invalid values become one StepError line naming each flag."""
    try:
        return model.model_validate(_coerce(model, values))
    except ValidationError as exc:
        raise StepError(f"invalid input: {describe_validation_error(exc)}") from None


def parse_args(model: type[BaseModel], argv: Sequence[str] | None, prog: str, description: str | None = None):
    """`(raw field values, result_dir)` from the command line (values are not validated yet)."""
    ns = vars(build_parser(model, prog, description).parse_args(argv))
    result_dir = ns.pop("result_dir", None)
    return ns, result_dir


def run_cli(
    name: str,
    model: type[I],
    core: Callable[[I], BaseModel],
    argv: Sequence[str] | None = None,
    *,
    prog: str | None = None,
    description: str | None = None,
    before: Callable[[], None] | None = None,
) -> BaseModel:
    """Parse `argv` into `model`, run `core` under the failure policy, write the result files."""
    from shared.cli import run_step

    raw, result_dir = parse_args(model, argv, prog or f"python -m steps.{name}", description)

    def call():
        if before is not None:
            before()
        return core(validate_input(model, raw))

    return run_step(name, call, result_dir)
