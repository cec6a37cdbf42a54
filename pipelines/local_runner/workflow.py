"""Load a compiled Argo Workflow/WorkflowTemplate and check it before anything runs.

Checks here: the Argo schema, the fields the runner implements (`refusals`), expressions and the
entrypoint; what needs the run's parameters is checked by `preflight.Preflight`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pipelines.argo_schema import _argo_schema
from pipelines.local_runner.depends import depends_expression, referenced_tasks
from pipelines.local_runner.errors import UnsupportedFeature, WorkflowError
from pipelines.local_runner.preflight import check_expressions
from pipelines.local_runner.refusals import check_fields
from pipelines.local_runner.schema import validate_document

RUNNABLE = ("container", "script")
NOT_LOCAL = ("resource", "suspend", "http", "plugin", "containerSet", "data")


@dataclass
class Workflow:
    """The parts of a compiled workflow the runner needs."""

    doc: dict
    source: Path
    name: str
    templates: dict[str, dict]
    entrypoint: str
    tasks: dict[str, dict]
    upstream: dict[str, list[str]]  # task -> tasks its `depends` names
    declared: dict[str, dict] = field(default_factory=dict)  # parameter name -> its spec
    parallelism: int | None = None

    @property
    def spec(self) -> dict:
        return self.doc["spec"]

    def template_of(self, task: str) -> dict:
        return self.templates[self.tasks[task]["template"]]

    def kind_of(self, template: Mapping) -> str:
        for kind in RUNNABLE + NOT_LOCAL + ("dag", "steps"):
            if kind in template:
                return kind
        return "unknown"

    def values_from(self, values_dir: Path | None) -> dict[str, str]:
        """Workflow parameters given by `valueFrom.configMapKeyRef`, read from the values folder."""
        from pipelines.local_runner.pod import read_value

        found = {}
        for name, spec in self.declared.items():
            ref = (spec.get("valueFrom") or {}).get("configMapKeyRef")
            if ref:
                value = read_value(
                    values_dir,
                    "configMapKeyRef",
                    ref["name"],
                    ref["key"],
                    bool(ref.get("optional")),
                    f"parameter {name}",
                )
                if value is not None:
                    found[name] = value
        return found

    def ancestors(self, task: str) -> set[str]:
        seen: set[str] = set()
        stack = list(self.upstream[task])
        while stack:
            t = stack.pop()
            if t not in seen:
                seen.add(t)
                stack.extend(self.upstream[t])
        return seen

    def resolve_parameters(self, *layers: Mapping[str, str]) -> dict[str, str]:
        """Declared defaults overridden by each layer in turn (profile, then --param)."""
        values = {name: spec.get("value") for name, spec in self.declared.items()}
        for layer in layers:
            unknown = sorted(set(layer) - set(self.declared))
            if unknown:
                raise WorkflowError(
                    f"unknown parameter(s) {', '.join(unknown)}; the workflow declares: "
                    f"{', '.join(sorted(self.declared)) or '(none)'}"
                )
            values.update({k: str(v) for k, v in layer.items()})
        missing = sorted(name for name, value in values.items() if value is None)
        if missing:
            raise WorkflowError(f"parameter(s) {', '.join(missing)} have no default; pass --param NAME=VALUE")
        for name, value in values.items():
            allowed = self.declared[name].get("enum")
            if allowed and value not in [str(a) for a in allowed]:
                raise WorkflowError(
                    f"parameter {name}={value!r} is not one of {', '.join(map(str, allowed))}"
                )
        return {k: str(v) for k, v in values.items()}


def load_workflow(path: Path) -> Workflow:
    path = Path(path)
    if not path.is_file():
        raise WorkflowError(f"workflow file {path} not found")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise WorkflowError(f"{path} is not valid YAML: {exc}") from None
    validate_document(doc, str(path))
    return build_workflow(doc, path)


def build_workflow(doc: dict, path: Path) -> Workflow:
    spec = doc["spec"]
    if spec.get("workflowTemplateRef"):
        raise UnsupportedFeature(
            f"{path}: workflowTemplateRef is not supported locally; run the template itself"
        )
    check_fields(doc, _argo_schema()["definitions"], str(path))
    check_expressions(doc)
    meta = doc.get("metadata", {})
    name = meta.get("name") or meta.get("generateName") or path.stem
    defaults = spec.get("templateDefaults") or {}
    templates = {t["name"]: _merged(defaults, t) for t in spec.get("templates", [])}
    entrypoint = spec.get("entrypoint")
    if not entrypoint:
        raise WorkflowError(f"{path}: spec.entrypoint is not set")
    if entrypoint not in templates:
        raise WorkflowError(f"{path}: entrypoint {entrypoint!r} is not a template ({', '.join(templates)})")
    entry = templates[entrypoint]
    if "dag" in entry:
        tasks = {t["name"]: t for t in entry["dag"].get("tasks", [])}
    elif "steps" in entry:
        tasks = {s["name"]: s for group in entry["steps"] or [] for s in (group or [])}
    else:
        tasks = {entrypoint: {"name": entrypoint, "template": entrypoint}}
    declared = {p["name"]: p for p in spec.get("arguments", {}).get("parameters", [])}
    return Workflow(
        doc=doc,
        source=path,
        name=name.rstrip("-"),
        templates=templates,
        entrypoint=entrypoint,
        tasks=tasks,
        upstream={n: referenced_tasks(depends_expression(t)) for n, t in tasks.items()},
        declared=declared,
        parallelism=spec.get("parallelism"),
    )


def _merged(defaults: Mapping, template: Mapping) -> dict:
    """`spec.templateDefaults` under a template: the template's own values win, maps merge."""
    merged = dict(defaults)
    for key, value in template.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged
