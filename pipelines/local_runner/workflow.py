"""Load a compiled Argo Workflow/WorkflowTemplate and check it before anything runs.

Checks: the Argo schema, the entrypoint, every task's template, every task a `depends` or a
`{{tasks.X...}}` reference names (it must be an upstream task, as Argo requires), and cycles.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pipelines.local_runner.depends import depends_expression, referenced_tasks
from pipelines.local_runner.errors import UnsupportedFeature, WorkflowError
from pipelines.local_runner.schema import validate_document
from pipelines.local_runner.substitution import references

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
    meta = doc.get("metadata", {})
    name = meta.get("name") or meta.get("generateName") or path.stem
    templates = {t["name"]: t for t in spec.get("templates", [])}
    entrypoint = spec.get("entrypoint")
    if not entrypoint:
        raise WorkflowError(f"{path}: spec.entrypoint is not set")
    if entrypoint not in templates:
        raise WorkflowError(f"{path}: entrypoint {entrypoint!r} is not a template ({', '.join(templates)})")
    entry = templates[entrypoint]
    if "dag" in entry:
        tasks = {t["name"]: t for t in entry["dag"].get("tasks", [])}
    elif any(kind in entry for kind in RUNNABLE):
        tasks = {entrypoint: {"name": entrypoint, "template": entrypoint}}
    else:
        raise UnsupportedFeature(f"{path}: entrypoint {entrypoint!r} must be a DAG or a container template")
    declared = {p["name"]: p for p in spec.get("arguments", {}).get("parameters", [])}
    wf = Workflow(
        doc=doc,
        source=path,
        name=name.rstrip("-"),
        templates=templates,
        entrypoint=entrypoint,
        tasks=tasks,
        upstream={},
        declared=declared,
        parallelism=spec.get("parallelism"),
    )
    _check_tasks(wf)
    _check_cycles(wf)
    _check_task_references(wf)
    return wf


def _check_tasks(wf: Workflow) -> None:
    for name, task in wf.tasks.items():
        where = f"task {name!r}"
        if "templateRef" in task:
            raise UnsupportedFeature(f"{where}: templateRef is not supported locally")
        for loop in ("withItems", "withParam", "withSequence"):
            if loop in task:
                raise UnsupportedFeature(f"{where}: {loop} is not supported locally")
        template = task.get("template")
        if template not in wf.templates:
            raise WorkflowError(
                f"{where} uses unknown template {template!r}; templates: {', '.join(wf.templates)}"
            )
        kind = wf.kind_of(wf.templates[template])
        if kind in ("dag", "steps", "unknown"):
            raise UnsupportedFeature(
                f"{where}: template {template!r} ({kind}) cannot run locally; only "
                "container and script templates (resource templates only when skipped)"
            )
        upstream = referenced_tasks(depends_expression(task))
        for dep in upstream:
            if dep not in wf.tasks:
                raise WorkflowError(f"{where} depends on unknown task {dep!r}; tasks: {', '.join(wf.tasks)}")
            if dep == name:
                raise WorkflowError(f"{where} depends on itself")
        wf.upstream[name] = upstream


def _check_cycles(wf: Workflow) -> None:
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(task: str, trail: list[str]) -> None:
        if state.get(task) == 2:
            return
        if state.get(task) == 1:
            cycle = trail[trail.index(task) :] + [task]
            raise WorkflowError(f"dependency cycle: {' -> '.join(cycle)}")
        state[task] = 1
        for dep in wf.upstream[task]:
            visit(dep, trail + [task])
        state[task] = 2

    for task in wf.tasks:
        visit(task, [])


def _task_text(task: Mapping) -> list[str]:
    texts = [str(task.get("when", ""))]
    for group in ("parameters", "artifacts"):
        for arg in task.get("arguments", {}).get(group, []):
            texts += [str(arg.get("value", "")), str(arg.get("from", ""))]
    return texts


def _check_task_references(wf: Workflow) -> None:
    for name, task in wf.tasks.items():
        ancestors = wf.ancestors(name)
        for text in _task_text(task):
            for ref in references(text):
                parts = ref.split(".")
                if parts[0] != "tasks" or len(parts) < 3:
                    continue
                if parts[1] not in wf.tasks:
                    raise WorkflowError(f"task {name!r} refers to unknown task {parts[1]!r} in {{{{{ref}}}}}")
                if parts[1] not in ancestors:
                    raise WorkflowError(
                        f"task {name!r} uses {{{{{ref}}}}} but does not depend on {parts[1]!r}"
                    )
