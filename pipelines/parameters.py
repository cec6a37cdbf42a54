"""The workflow's parameters: one list, used by the Hera builders, submit.py and the Actions inputs.

Every tunable a user chooses is an Argo workflow parameter with a default and a description (and
an enum where the choice is closed), so the Argo UI's Submit form shows a tooltip and a dropdown,
and every run passes all of them explicitly (which is what makes "Resubmit" show them).

A parameter that feeds a step's input field carries that field's name (kebab case) and takes its
default, description and allowed values from the step's contract: a default is written once, on
the contract. Where the cluster wants another value than a one-machine CLI run (resources, the
deploy target), the override is written here, with the reason.
"""

from __future__ import annotations

import enum
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache

from pydantic import BaseModel

from shared.step_cli import flag_name
from steps.deploy.contract import DeployInput
from steps.dvc_fetch.contract import FetchInput
from steps.hpo.config import DEFAULT_SEARCH_SPACE
from steps.hpo.contract import HpoInput
from steps.register.contract import RegisterInput
from steps.tokenize.contract import TokenizeInput


@dataclass(frozen=True)
class ParamSpec:
    """One workflow parameter: its default (always a string, as Argo stores it) and its help."""

    name: str
    default: str
    description: str
    enum: tuple[str, ...] | None = None
    feeds: tuple[tuple[type[BaseModel], str], ...] = ()  # the contract fields it is passed to


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _choices(annotation: object) -> tuple[str, ...] | None:
    if typing.get_origin(annotation) is typing.Literal:
        return tuple(str(v) for v in typing.get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return tuple(str(m.value) for m in annotation)
    return None


def field_param(
    model: type[BaseModel],
    field: str,
    *also: type[BaseModel],
    default: str | None = None,
    description: str | None = None,
) -> ParamSpec:
    """The parameter that feeds `model.field` (and the same field of `also`), from the contract."""
    info = model.model_fields[field]
    if default is None:
        default = _text(info.get_default(call_default_factory=True))
    return ParamSpec(
        name=flag_name(field),
        default=default,
        description=description or _sentence(info.description or field),
        enum=_choices(info.annotation),
        feeds=((model, field), *((m, field) for m in also)),
    )


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:].rstrip(".") + "."


def _release_tag() -> str:
    """The image tag of this code's release (images.yaml tags a release `vX.Y.Z` as `X.Y.Z`).

    Stable between commits (the compiled YAML does not change with every commit) and immutable,
    unlike `latest`; a run of unreleased code passes `image-tag=<commit sha>`.
    """
    import tomllib
    from importlib import metadata
    from pathlib import Path

    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    if pyproject.is_file():
        return tomllib.loads(pyproject.read_text())["project"]["version"]
    return metadata.version("emotion-hpo")


@cache
def _parameters() -> tuple[ParamSpec, ...]:
    return (
        field_param(FetchInput, "data_version"),
        field_param(
            FetchInput,
            "registry_url",
            default="https://git.example.com/ml-platform/data-registry.git",
            description="Git URL of the team's DVC data registry.",
        ),
        field_param(FetchInput, "data_path"),
        field_param(HpoInput, "model", TokenizeInput),
        field_param(TokenizeInput, "max_length"),
        field_param(TokenizeInput, "limit"),
        field_param(TokenizeInput, "eval_limit", RegisterInput),
        field_param(HpoInput, "num_samples"),
        field_param(HpoInput, "max_epochs"),
        field_param(HpoInput, "asha_grace_period"),
        field_param(HpoInput, "asha_reduction_factor"),
        field_param(HpoInput, "search_alg"),
        ParamSpec(
            "search-space",
            DEFAULT_SEARCH_SPACE.read_text(),
            "Search space as YAML: per hyperparameter a distribution (loguniform, uniform, choice, ...)"
            " with low/high or values.",
            feeds=((HpoInput, "search_space"),),
        ),
        # A cluster node: 4 CPUs and a quarter GPU per trial (the CLI's 1 CPU / no GPU suits a laptop).
        field_param(HpoInput, "cpus_per_trial", default="4"),
        field_param(HpoInput, "gpus_per_trial", default="0.25"),
        ParamSpec(
            "hpo-runner",
            "in-pod",
            "Where the search runs: Ray inside the hpo step's pod, or a KubeRay RayJob created by the"
            " workflow.",
            ("in-pod", "rayjob"),
        ),
        field_param(HpoInput, "seed", TokenizeInput),
        field_param(RegisterInput, "model_name"),
        field_param(RegisterInput, "accuracy_tolerance"),
        field_param(RegisterInput, "f1_macro_tolerance"),
        # The workflow runs on a cluster; `run_local`'s demo profile switches to local.
        field_param(DeployInput, "deploy_target", default="kubernetes"),
        # steps/deploy/k8s/rbac.yaml grants the deploy step this namespace only.
        field_param(DeployInput, "deploy_namespace", default="emotion"),
        field_param(DeployInput, "serving_port"),
        ParamSpec(
            "image-registry",
            "ghcr.io/example-org",
            "Container registry holding the train and serving images.",
        ),
        ParamSpec(
            "image-tag",
            _release_tag(),
            "Tag of the train and serving images (recorded as lineage in MLflow): a full commit sha or"
            " a release version, as .github/workflows/images.yaml tags them. A mutable tag (DEV,"
            " latest) turns memoization off.",
        ),
        ParamSpec(
            "mlflow-tracking-uri",
            "http://mlflow.mlflow.svc.cluster.local:5000",
            "MLflow tracking server URI.",
        ),
        ParamSpec("mlflow-experiment-name", "emotion", "MLflow experiment that holds the search runs."),
        field_param(HpoInput, "ray_address"),
        # On the artifact store, not in the pod: a retried hpo step continues the workflow's search.
        field_param(HpoInput, "storage_dir", default="s3://mlflow/hpo"),
    )


def __getattr__(name: str):
    """PARAMETERS, BY_NAME and NAMES, computed on first use (no file is read at import time)."""
    if name == "PARAMETERS":
        return _parameters()
    if name == "BY_NAME":
        return {p.name: p for p in _parameters()}
    if name == "NAMES":
        return tuple(p.name for p in _parameters())
    raise AttributeError(name)


class ParameterError(ValueError):
    """An unknown parameter name or a value outside its enum; the message lists what is allowed."""


def defaults() -> dict[str, str]:
    return {p.name: p.default for p in _parameters()}


def resolve(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """All parameters with their defaults replaced by `overrides`, checked against the declarations."""
    by_name = {p.name: p for p in _parameters()}
    values = defaults()
    for name, value in (overrides or {}).items():
        spec = by_name.get(name)
        if spec is None:
            raise ParameterError(f"unknown parameter {name!r}; valid parameters: {', '.join(by_name)}")
        value = str(value)
        if spec.enum is not None and value not in spec.enum:
            raise ParameterError(f"parameter {name!r} must be one of {', '.join(spec.enum)}; got {value!r}")
        values[name] = value
    return values


def parse_assignments(items: Iterable[str]) -> dict[str, str]:
    """Parse `key=value` strings (as given to --param) into a dict; the value may contain '='."""
    out: dict[str, str] = {}
    names = ", ".join(p.name for p in _parameters())
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ParameterError(f"expected key=value, got {item!r}; valid parameters: {names}")
        out[name.strip()] = value
    return out
