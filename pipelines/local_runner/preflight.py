"""Checks that need the workflow's meaning, not just its fields, all before anything runs.

- every template a run can reach (from the entrypoint, the exit handler and hooks) exists and can
  run locally; a `resource`/`http`/`suspend`/... template is allowed only behind a `when` that the
  run's workflow parameters already make false (the project's RayJob step);
- container, script, init and sidecar containers name a `command` (images are not run);
- DAGs: dependencies exist, no cycles, `{{tasks.X}}` references point upstream;
- `podSpecPatch` only when it sizes containers (`pod.pod_spec_patch_effect`);
- lifecycle hooks other than `exit`, `templateRef`;
- every `{{=...}}` and expression field parses and calls only functions Argo provides.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping
from typing import Any

from pipelines.local_runner import exprlang, images
from pipelines.local_runner.depends import depends_expression, referenced_tasks
from pipelines.local_runner.environment import required_missing
from pipelines.local_runner.errors import UnsupportedFeature, WorkflowError
from pipelines.local_runner.expressions import evaluate_bool
from pipelines.local_runner.pod import pod_spec_patch_effect, read_value
from pipelines.local_runner.substitution import expressions, references, substitute
from pipelines.local_runner.task import PYTHON_COMMANDS

LOCAL_KINDS = ("container", "script", "dag", "steps")
OTHER_KINDS = ("resource", "suspend", "http", "plugin", "containerSet", "data")


def kind_of(template: Mapping) -> str:
    for kind in LOCAL_KINDS + OTHER_KINDS:
        if kind in template:
            return kind
    return "unknown"


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)


def check_expressions(doc: dict) -> None:
    for text in _strings(doc.get("spec", {})):
        for expr in expressions(text):
            _parse(expr, "{{=" + expr + "}}")

    def fields(node: Any) -> Iterator[tuple[str, str]]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "expression" and isinstance(value, str):
                    yield key, value
                else:
                    yield from fields(value)
        elif isinstance(node, list):
            for item in node:
                yield from fields(item)

    for _, expr in fields(doc.get("spec", {})):
        if "{{" not in expr:
            _parse(expr, expr)


def _parse(expr: str, shown: str) -> None:
    try:
        exprlang.parse(expr)
    except UnsupportedFeature:
        raise
    except WorkflowError as exc:
        raise WorkflowError(f"{shown.strip()}: {exc}") from None


class Preflight:
    def __init__(self, wf, parameters: Mapping[str, str], values_dir=None, base_env: Mapping | None = None):
        self.wf = wf
        self.values_dir = values_dir
        self.base_env = dict(base_env or {})  # what every step gets: environment.py
        self.globals = {f"workflow.parameters.{k}": v for k, v in parameters.items()}
        self.seen: set[int] = set()

    def run(self) -> None:
        spec = self.wf.spec
        if spec.get("podSpecPatch"):
            pod_spec_patch_effect(spec["podSpecPatch"], "spec.podSpecPatch")
        self.template(self.wf.templates[self.wf.entrypoint], f"entrypoint {self.wf.entrypoint!r}")
        hooks = dict(spec.get("hooks") or {})
        if spec.get("onExit"):
            hooks.setdefault("exit", {"template": spec["onExit"]})
        self.hooks(hooks, "spec.hooks")

    def hooks(self, hooks: Mapping, where: str) -> None:
        for name, hook in hooks.items():
            if name != "exit":
                raise UnsupportedFeature(
                    f"{where}.{name}: lifecycle hooks other than `exit` (expression hooks) "
                    "are not supported locally"
                )
            if hook.get("expression"):
                raise UnsupportedFeature(
                    f"{where}.exit.expression: an exit hook with an expression is not supported"
                )
            self.call(hook, f"{where}.exit")

    def call(self, spec: Mapping, where: str) -> None:
        """A step, task or hook: its template (named or inline) and its own hooks."""
        if "templateRef" in spec:
            raise UnsupportedFeature(f"{where}: templateRef is not supported locally; copy the template in")
        if spec.get("onExit"):
            self.call({"template": spec["onExit"]}, f"{where}.onExit")
        self.hooks(spec.get("hooks") or {}, f"{where}.hooks")
        if "inline" in spec:
            template = spec["inline"]
        else:
            name = spec.get("template")
            if name not in self.wf.templates:
                raise WorkflowError(
                    f"{where} uses unknown template {name!r}; templates: {', '.join(self.wf.templates)}"
                )
            template = self.wf.templates[name]
        if self._statically_false(spec.get("when")):
            return
        self.template(template, f"{where} (template {template.get('name', 'inline')!r})")

    def _statically_false(self, when: Any) -> bool:
        """A `when` that only reads workflow parameters and is false for this run."""
        if when is None:
            return False
        text = str(when)
        if expressions(text) or any(not r.startswith("workflow.parameters.") for r in references(text)):
            return False
        try:
            return not evaluate_bool(substitute(text, self.globals, "when"), self.globals)
        except WorkflowError:
            return False

    def template(self, template: Mapping, where: str) -> None:
        if id(template) in self.seen:
            return
        self.seen.add(id(template))
        kind = kind_of(template)
        if kind in OTHER_KINDS or kind == "unknown":
            raise UnsupportedFeature(f"{where}: {kind} templates cannot run locally")
        for field in ("daemon", "failFast"):
            if template.get(field) not in (None, False):
                raise UnsupportedFeature(f"{where}: template {field} is not supported locally")
        if template.get("podSpecPatch"):
            pod_spec_patch_effect(template["podSpecPatch"], where)
        if template.get("memoize") and kind not in ("container", "script"):
            raise UnsupportedFeature(f"{where}: memoize on a {kind} template is not supported locally")
        if kind in ("container", "script"):
            self.containers(template, where)
            self.values(template, where)
        elif kind == "dag":
            self.dag(template, where)
        else:
            for group in template.get("steps") or []:
                for step in group if isinstance(group, list) else (group or {}).get("steps", []):
                    self.call(step, f"{where} step {step.get('name')!r}")

    def containers(self, template: Mapping, where: str) -> None:
        body = template.get("container") or template.get("script") or {}
        if (
            kind_of(template) == "container"
            and not body.get("command")
            and not images.entrypoint(str(body.get("image", "")))
        ):
            raise UnsupportedFeature(
                f"{where}: container.command is not set; images are not run locally, so the template "
                "must name its command"
            )
        command = body.get("command") or images.entrypoint(str(body.get("image", ""))) or ["sh"]
        _check_program(command, body, where)
        for field in ("initContainers", "sidecars"):
            for extra in template.get(field) or []:
                if not extra.get("command"):
                    raise UnsupportedFeature(
                        f"{where}: {field} {extra.get('name')!r} has no command; images are not run locally"
                    )
                _check_program(extra["command"], extra, f"{where} {field} {extra.get('name')!r}")

    def values(self, template: Mapping, where: str) -> None:
        """Required secrets and config maps must be in --values-dir (env refs: or passed with --pass-env)."""
        for spec in (template.get("inputs") or {}).get("parameters") or []:
            ref = (spec.get("valueFrom") or {}).get("configMapKeyRef")
            if ref and not ref.get("optional") and spec.get("default") is None:
                read_value(
                    self.values_dir, "configMapKeyRef", ref["name"], ref["key"], False, f"{where} input"
                )
        bodies = [template.get("container") or template.get("script") or {}]
        bodies += list(template.get("initContainers") or []) + list(template.get("sidecars") or [])
        for body in bodies:
            required_missing(body, self.base_env, self.values_dir, where)

    def dag(self, template: Mapping, where: str) -> None:
        tasks = {t["name"]: t for t in template["dag"].get("tasks") or []}
        upstream = {}
        for name, task in tasks.items():
            deps = referenced_tasks(depends_expression(task))
            for dep in deps:
                if dep not in tasks:
                    raise WorkflowError(
                        f"{where} task {name!r} depends on unknown task {dep!r}; tasks: {', '.join(tasks)}"
                    )
                if dep == name:
                    raise WorkflowError(f"{where} task {name!r} depends on itself")
            upstream[name] = deps
        _check_cycles(upstream)
        for name, task in tasks.items():
            ancestors = _ancestors(name, upstream)
            for text in _strings({k: task.get(k) for k in ("when", "arguments", "withParam")}):
                for ref in references(text):
                    parts = ref.split(".")
                    if parts[0] != "tasks" or len(parts) < 3:
                        continue
                    if parts[1] not in tasks:
                        raise WorkflowError(
                            f"task {name!r} refers to unknown task {parts[1]!r} in {{{{{ref}}}}}"
                        )
                    if parts[1] not in ancestors:
                        raise WorkflowError(
                            f"task {name!r} uses {{{{{ref}}}}} but does not depend on {parts[1]!r}"
                        )
            self.call(task, f"{where} task {name!r}")


def _check_program(command: list, body: Mapping, where: str) -> None:
    """The program a container starts must exist here (the image that would provide it is not run)."""
    program = str(command[0]) if command else ""
    if not program or "{{" in program or program in PYTHON_COMMANDS or program in images.PROGRAMS:
        return
    if images.provides(str(body.get("image", "")), program):
        return
    if shutil.which(program) is None:
        raise UnsupportedFeature(
            f"{where}: command {program!r} (from image {body.get('image', '?')!r}) is not installed on "
            "this machine; images are not run locally"
        )


def _ancestors(task: str, upstream: Mapping[str, list[str]]) -> set[str]:
    seen: set[str] = set()
    stack = list(upstream[task])
    while stack:
        t = stack.pop()
        if t not in seen:
            seen.add(t)
            stack.extend(upstream[t])
    return seen


def _check_cycles(upstream: Mapping[str, list[str]]) -> None:
    state: dict[str, int] = {}

    def visit(task: str, trail: list[str]) -> None:
        if state.get(task) == 2:
            return
        if state.get(task) == 1:
            cycle = trail[trail.index(task) :] + [task]
            raise WorkflowError(f"dependency cycle: {' -> '.join(cycle)}")
        state[task] = 1
        for dep in upstream[task]:
            visit(dep, trail + [task])
        state[task] = 2

    for task in upstream:
        visit(task, [])
