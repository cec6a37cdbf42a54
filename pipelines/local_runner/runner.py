"""Run a workflow's templates locally, recursively, with Argo's semantics.

- `steps`: groups run in order, the steps of a group in parallel; a failed step (without
  `continueOn`) fails the template once its group is done.
- `dag`: `depends`/`dependencies`, independent tasks in parallel, `target`, and `failFast`
  (default true: after a failure nobody handles, no new task starts).
- loops (`loops.py`), `when`, lifecycle `exit` hooks and `onExit` on steps/tasks and on the
  workflow (with `{{workflow.status}}` and `{{workflow.failures}}`).
- container/script templates run as local processes (`task.execute`); nodes are recorded in the
  run state under their Argo-like names (`parent.child`, `child(0:item)`).
"""

from __future__ import annotations

import copy
import json
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from pipelines.local_runner import sync
from pipelines.local_runner.cache import Cache
from pipelines.local_runner.depends import (
    CACHED,
    ERRORED,
    FAILED,
    OMITTED,
    SKIPPED,
    SUCCEEDED,
    depends_expression,
    evaluate_depends,
    handles_failure,
    referenced_tasks,
)
from pipelines.local_runner.engine_run import Engine
from pipelines.local_runner.errors import WorkflowError
from pipelines.local_runner.expressions import evaluate_bool
from pipelines.local_runner.exprlang import ExprError, evaluate, go_string, nest
from pipelines.local_runner.loops import aggregate_outputs, expand, is_loop
from pipelines.local_runner.nodes import ARGO_PHASE, BAD, INTERRUPTED, NodeResult, node_variables
from pipelines.local_runner.process import ProcessGroups
from pipelines.local_runner.state import RUN_FAILED, RUN_INTERRUPTED, RUN_SUCCEEDED, StateStore
from pipelines.local_runner.substitution import substitute
from pipelines.local_runner.task import ResolvedTask, TaskContext, execute
from pipelines.local_runner.workflow import RUNNABLE, Workflow


def child_name(parent: str, child: str) -> str:
    return f"{parent}.{child}" if parent else child


class Runner:
    def __init__(
        self,
        wf: Workflow,
        store: StateStore,
        run_dir: Path,
        *,
        workdir: Path,
        cache_dir: Path,
        use_cache: bool = True,
        on_change: Callable[[str], None] | None = None,
        parameters: dict[str, str] | None = None,
        base_env: dict[str, str] | None = None,
        retries: bool = True,
        values_dir: Path | None = None,
        engine: Engine | None = None,
    ):
        self.wf = wf
        self.store = store
        self.run_dir = Path(run_dir)
        self.groups = ProcessGroups()
        self.interrupted = threading.Event()
        self.deadline_hit = threading.Event()
        self.on_change = on_change or (lambda name: None)
        state = store.state
        self.parameters = dict(state.parameters if parameters is None else parameters)
        global_vars = {f"workflow.parameters.{k}": v for k, v in self.parameters.items()}
        if "json" not in self.parameters:
            global_vars["workflow.parameters.json"] = json.dumps(
                [{"name": k, "value": v} for k, v in self.parameters.items()]
            )
        meta = wf.doc.get("metadata", {})
        global_vars.update({f"workflow.labels.{k}": str(v) for k, v in (meta.get("labels") or {}).items()})
        global_vars.update(
            {f"workflow.annotations.{k}": str(v) for k, v in (meta.get("annotations") or {}).items()}
        )
        global_vars.update(
            {
                "workflow.name": state.workflow_name,
                "workflow.uid": state.workflow_uid,
                "workflow.namespace": "local",
                "workflow.serviceAccountName": str(wf.spec.get("serviceAccountName") or "local"),
                "workflow.mainEntrypoint": wf.entrypoint,
                "workflow.priority": str(wf.spec.get("priority", 0)),
                "workflow.creationTimestamp": time.strftime(
                    "%Y-%m-%dT%H:%M:%SZ", time.gmtime(state.created_at)
                ),
            }
        )
        self.reusable = {n for n, t in state.tasks.items() if t.phase in (SUCCEEDED, CACHED)}
        self.ctx = TaskContext(
            run_dir=self.run_dir,
            workdir=Path(workdir),
            store=store,
            groups=self.groups,
            cache=Cache(cache_dir),
            use_cache=use_cache,
            global_vars=global_vars,
            default_retry=wf.spec.get("retryStrategy"),
            base_env=dict(base_env or {}),
            retries=retries,
            on_change=self.on_change,
            values_dir=values_dir,
            engine=engine,
            pod_security=dict(wf.spec.get("securityContext") or {}),
            volumes={
                **{
                    c["metadata"]["name"]: {"emptyDir": {}} for c in wf.spec.get("volumeClaimTemplates") or []
                },
                **{v["name"]: v for v in wf.spec.get("volumes") or []},
            },
            claims_dir=Path(cache_dir).parent / "volumes",
            locks_dir=Path(cache_dir).parent / "locks",
        )
        self.hook_failures: list[NodeResult] = []
        parallelism = wf.spec.get("parallelism")
        self.slots = threading.BoundedSemaphore(int(parallelism)) if parallelism else None

    # ---- recording ---------------------------------------------------------------------------
    def _record(self, name: str, phase: str, message: str = "") -> NodeResult:
        now = time.time()
        self.store.update_task(name, phase=phase, message=message, started_at=now, finished_at=now)
        self.on_change(name)
        return NodeResult(name=name, phase=phase, message=message)

    @property
    def stopping(self) -> bool:
        return self.groups.stopping.is_set()

    # ---- templates ---------------------------------------------------------------------------
    def template(self, spec: dict, where: str) -> dict:
        if "inline" in spec:
            inline = dict(spec["inline"])
            inline.setdefault("name", spec.get("name", "inline"))
            return inline
        name = spec.get("template")
        if name not in self.wf.templates:
            raise WorkflowError(f"{where} uses unknown template {name!r}")
        return self.wf.templates[name]

    def run_template(self, name: str, template: dict, args: dict, where: str) -> NodeResult:
        kind = self.wf.kind_of(template)
        if kind in RUNNABLE:
            return self._leaf(name, template, args)
        if kind not in ("dag", "steps"):
            return self._record(
                name,
                ERRORED,
                f"template {template.get('name')!r} is a {kind} template, which cannot run locally",
            )
        started = time.time()
        try:
            scope = self._inputs(template, args, where)
        except WorkflowError as exc:
            return self._record(name, ERRORED, str(exc))
        if kind == "dag":
            node, children, prefix = self._dag(name, template, scope)
        else:
            node, children, prefix = self._steps(name, template, scope)
        node.started_at = started
        if node.ok:
            variables = dict(scope)
            for step, result in children.items():
                variables.update(node_variables(prefix, step, result))
            try:
                node.parameters, node.artifacts = self._outputs(template, variables, children, prefix)
            except WorkflowError as exc:  # recorded, so the run's report says why it failed
                node = self._record(name or self.wf.entrypoint, ERRORED, str(exc))
        node.finished_at = time.time()
        return node

    def _inputs(self, template: dict, args: dict, where: str) -> dict[str, str]:
        scope = dict(self.ctx.global_vars)
        inputs = template.get("inputs") or {}
        for spec in inputs.get("parameters") or []:
            pname = spec["name"]
            if pname in args["parameters"]:
                value = args["parameters"][pname]
            elif spec.get("value") is not None:
                value = substitute(str(spec["value"]), scope, f"{where} input {pname}")
            elif spec.get("default") is not None:
                value = substitute(str(spec["default"]), scope, f"{where} input {pname}")
            else:
                raise WorkflowError(
                    f"input parameter {pname!r} of template {template.get('name')!r} has no value"
                )
            scope[f"inputs.parameters.{pname}"] = value
        for spec in inputs.get("artifacts") or []:
            source = args["artifacts"].get(spec["name"])
            if source and "local" in source:
                scope[f"inputs.artifacts.{spec['name']}"] = source["local"]
            elif not spec.get("optional"):
                raise WorkflowError(f"{where}: input artifact {spec['name']!r} has no local source")
        return scope

    def _outputs(
        self, template: dict, variables: dict[str, str], children: dict[str, NodeResult], prefix: str
    ) -> tuple[dict[str, str], dict[str, str]]:
        outputs = template.get("outputs") or {}
        params: dict[str, str] = {}
        where = f"template {template.get('name')!r} output"
        for spec in outputs.get("parameters") or []:
            value_from = spec.get("valueFrom") or {}
            try:
                if "expression" in value_from:
                    value = evaluate(value_from["expression"], nest(variables))
                    if value is None:
                        raise ExprError(f"expression {value_from['expression']!r} evaluated to nil")
                    params[spec["name"]] = go_string(value)
                elif "parameter" in value_from:
                    params[spec["name"]] = substitute(str(value_from["parameter"]), variables, where)
                elif spec.get("value") is not None:
                    params[spec["name"]] = substitute(str(spec["value"]), variables, where)
                else:
                    raise WorkflowError(f"{where} {spec['name']!r} has no value")
            except WorkflowError:
                if value_from.get("default") is None:
                    raise
                params[spec["name"]] = str(value_from["default"])
        artifacts: dict[str, str] = {}
        for spec in outputs.get("artifacts") or []:
            ref = (spec.get("from") or "").strip()
            try:
                if "fromExpression" in spec:  # evaluates to a child's artifact (a local path here)
                    value = evaluate(spec["fromExpression"], nest(variables))
                    if not isinstance(value, str) or not value:
                        raise WorkflowError(f"{where} artifact {spec['name']}: fromExpression gave {value!r}")
                    artifacts[spec["name"]] = value
                    continue
                artifacts[spec["name"]] = substitute(ref, variables, f"{where} artifact {spec['name']}")
            except WorkflowError:
                if not spec.get("optional"):
                    raise
        return params, artifacts

    # ---- leaf ---------------------------------------------------------------------------------
    def _leaf(self, name: str, template: dict, args: dict) -> NodeResult:
        if name in self.reusable:  # done in the run being resumed
            self.reusable.discard(name)
            return NodeResult.from_state(name, self.store.state.tasks[name])
        if self.stopping:
            return self._record(name, "pending", "interrupted")
        task = ResolvedTask(
            name=name, template=template, parameters=args["parameters"], artifacts=args["artifacts"]
        )
        if self.slots is None:
            execute(task, self.ctx)
        else:
            self.store.update_task(name, phase="pending", message="waiting for parallelism")
            with self.slots:
                execute(task, self.ctx)
        return NodeResult.from_state(name, self.store.state.tasks[name])

    # ---- arguments, when, hooks ---------------------------------------------------------------
    def _arguments(self, spec: dict, variables: dict[str, str], where: str) -> dict:
        arguments = spec.get("arguments") or {}
        params = {}
        for p in arguments.get("parameters") or []:
            try:
                params[p["name"]] = substitute(
                    str(p.get("value", "")), variables, f"{where} argument {p['name']}"
                )
            except WorkflowError:
                if not _from_skipped(str(p.get("value", "")), variables):
                    raise  # an output of a skipped task is not supplied: the input's default applies
        artifacts: dict[str, dict] = {}
        for art in arguments.get("artifacts") or []:
            if "from" in art:
                try:
                    local = substitute(str(art["from"]), variables, f"{where} artifact {art['name']}")
                except WorkflowError:
                    if art.get("optional"):
                        continue
                    raise
                artifacts[art["name"]] = {"local": local}
            elif "raw" in art:
                artifacts[art["name"]] = {
                    "raw": substitute(str(art["raw"].get("data", "")), variables, where)
                }
            elif not art.get("optional"):
                raise WorkflowError(f"{where}: artifact {art['name']!r} needs `from` or `raw` to run locally")
        return {"parameters": params, "artifacts": artifacts}

    def run_step(
        self, name: str, spec: dict, variables: dict[str, str], prefix: str, slots=None
    ) -> NodeResult:
        """One step/task; a bug in the runner errors the node instead of hanging its parent.

        `slots`: the calling template's `parallelism`, taken by each step, task or loop item.
        """
        try:
            if is_loop(spec) or slots is None:
                return self._step(name, spec, variables, prefix, slots)
            with slots:
                return self._step(name, spec, variables, prefix, slots)
        except Exception as exc:  # noqa: BLE001 - reported on the node, the run goes on to its end
            return self._record(name, ERRORED, f"local runner error: {exc.__class__.__name__}: {exc}")

    def _step(self, name: str, spec: dict, variables: dict[str, str], prefix: str, slots=None) -> NodeResult:
        """One step/task: its loop, `when`, template and exit hook."""
        where = f"{prefix[:-1]} {spec['name']!r}"  # "step 'x'" / "task 'x'"
        try:
            if is_loop(spec):
                return self._loop(name, spec, variables, prefix, where, slots)
            if spec.get("when") is not None:
                when = substitute(str(spec["when"]), variables, f"{where} when")
                if not evaluate_bool(when, variables):
                    skipped = self._record(name, SKIPPED, f"when {when!r} is false")
                    skipped.parameters = _output_defaults(self.template(spec, where))
                    return skipped
            template = self.template(spec, where)
            args = self._arguments(spec, variables, where)
        except WorkflowError as exc:
            return self._record(name, ERRORED, str(exc))
        result = self.run_template(name, template, args, where)
        hook = (spec.get("hooks") or {}).get("exit") or (
            {"template": spec["onExit"]} if spec.get("onExit") else None
        )
        if hook is not None and not self.stopping:
            hook_vars = {**variables, **node_variables(prefix, spec["name"], result)}
            hook_result = self.run_hook(f"{name}.onExit", hook, hook_vars, where)
            if not hook_result.ok:
                self.hook_failures.append(hook_result)
        return result

    def run_hook(self, name: str, hook: dict, variables: dict[str, str], where: str) -> NodeResult:
        try:
            template = self.template(hook, f"{where} exit hook")
            args = self._arguments(hook, variables, f"{where} exit hook")
        except WorkflowError as exc:
            return self._record(name, ERRORED, str(exc))
        return self.run_template(name, template, args, f"{where} exit hook")

    def _loop(
        self, name: str, spec: dict, variables: dict[str, str], prefix: str, where: str, slots=None
    ) -> NodeResult:
        children = expand(spec, variables, where)
        if not children:
            return self._record(name, SKIPPED, "loop over no items")
        results: list[NodeResult | None] = [None] * len(children)

        def run(index: int, child: str, child_spec: dict, item_vars: dict[str, str]) -> None:
            results[index] = self.run_step(
                child_name(name.rpartition(".")[0], child),
                child_spec,
                {**variables, **item_vars},
                prefix,
                slots,
            )

        threads = [
            threading.Thread(target=run, args=(i, *c), daemon=True, name=f"loop-{c[0]}")
            for i, c in enumerate(children)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        done = [r for r in results if r is not None]
        node = NodeResult(name=name, phase=SUCCEEDED)
        failed = [r for r in done if not r.ok]
        if failed:
            node.phase, node.message = failed[0].phase, f"{failed[0].name}: {failed[0].message}"
        succeeded = [r for r in done if r.phase in (SUCCEEDED, CACHED)]
        node.result, node.parameters = aggregate_outputs(succeeded)
        node.items = [r.parameters for r in succeeded if r.parameters]
        return node

    # ---- steps --------------------------------------------------------------------------------
    def _steps(self, name: str, template: dict, scope: dict[str, str]):
        variables = dict(scope)
        results: dict[str, NodeResult] = {}
        node = NodeResult(name=name, phase=SUCCEEDED)
        slots = _slots(template)
        for group in template.get("steps") or []:
            steps = group if isinstance(group, list) else (group or {}).get("steps", [])
            group_results: dict[str, NodeResult] = {}

            def run(step: dict, out: dict[str, NodeResult] = group_results) -> None:
                out[step["name"]] = self.run_step(
                    child_name(name, step["name"]), step, variables, "steps", slots
                )

            threads = [threading.Thread(target=run, args=(s,), daemon=True) for s in steps]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            for step in steps:
                result = group_results[step["name"]]
                results[step["name"]] = result
                variables.update(node_variables("steps", step["name"], result))
            failed = [
                s["name"]
                for s in steps
                if not group_results[s["name"]].ok and not _continues(s, group_results[s["name"]])
            ]
            if failed or self.stopping:
                node.phase = INTERRUPTED if self.stopping else FAILED
                node.message = "interrupted" if self.stopping else f"step {failed[0]!r} failed"
                break
        return node, results, "steps"

    # ---- dag ----------------------------------------------------------------------------------
    def _dag(self, name: str, template: dict, scope: dict[str, str]):
        dag = template["dag"]
        tasks = {t["name"]: t for t in dag.get("tasks") or []}
        upstream = {n: referenced_tasks(depends_expression(t)) for n, t in tasks.items()}
        if dag.get("target"):
            wanted = set(str(dag["target"]).replace(",", " ").split())
            keep, stack = set(), list(wanted)
            while stack:
                t = stack.pop()
                if t not in keep and t in tasks:
                    keep.add(t)
                    stack.extend(upstream[t])
            tasks = {n: t for n, t in tasks.items() if n in keep}
        fail_fast = dag.get("failFast", True) is not False
        slots = _slots(template)
        results: dict[str, NodeResult] = {}
        running: set[str] = set()
        lock = threading.Condition()

        def unhandled() -> str | None:
            for t, r in results.items():
                if r.ok or _continues(tasks[t], r):
                    continue
                if any(handles_failure(depends_expression(s), t) for s in tasks.values()):
                    continue
                return t
            return None

        def run(task: str, variables: dict[str, str]) -> None:
            result = self.run_step(child_name(name, task), tasks[task], variables, "tasks", slots)
            with lock:
                results[task] = result
                running.discard(task)
                lock.notify_all()

        with lock:
            while True:
                if self.stopping:
                    while running:
                        lock.wait(0.2)
                    break
                for task, spec in tasks.items():
                    if task in results or task in running:
                        continue
                    if any(u not in results for u in upstream[task]):
                        continue
                    failed = unhandled()
                    if failed is not None and fail_fast:
                        results[task] = self._record(
                            child_name(name, task), OMITTED, f"not started: {failed} failed"
                        )
                        continue
                    expression = depends_expression(spec)
                    phases = {t: r.phase for t, r in results.items()}
                    if expression and not evaluate_depends(expression, phases):
                        results[task] = self._record(
                            child_name(name, task), OMITTED, f"depends {expression!r} is false"
                        )
                        continue
                    variables = dict(scope)
                    for t, r in results.items():
                        variables.update(node_variables("tasks", t, r))
                    running.add(task)
                    threading.Thread(target=run, args=(task, variables), daemon=True).start()
                if len(results) == len(tasks):
                    break
                lock.wait(0.2)
        node = NodeResult(name=name, phase=SUCCEEDED)
        failed = unhandled()
        if self.stopping:
            node.phase, node.message = INTERRUPTED, "interrupted"
        elif failed is not None:
            node.phase, node.message = FAILED, f"task {failed!r} failed"
        return node, results, "tasks"

    # ---- the workflow -------------------------------------------------------------------------
    def interrupt(self, *_args) -> None:
        """Signal handler: stop every step's process group; the run is then marked interrupted."""
        self.interrupted.set()
        self.groups.stopping.set()

    def run(self, install_signals: bool = True) -> str:
        previous = {}
        if install_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, self.interrupt)
        try:
            return self._main()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _main(self) -> str:
        outcome: dict[str, NodeResult] = {}
        thread = threading.Thread(target=lambda: outcome.update(root=self._workflow()), daemon=True)
        thread.start()
        deadline = self.wf.spec.get("activeDeadlineSeconds")
        end = time.monotonic() + float(deadline) if deadline not in (None, "") else None
        while thread.is_alive():
            if self.interrupted.is_set():
                self.groups.terminate_all()
                thread.join(timeout=30)
                break
            if end is not None and time.monotonic() > end and not self.deadline_hit.is_set():
                self.deadline_hit.set()
                self.groups.terminate_all()
            thread.join(timeout=0.2)
        if self.interrupted.is_set():
            for n, t in self.store.state.tasks.items():
                if t.phase in ("running", "retrying"):
                    self.store.update_task(
                        n, phase=INTERRUPTED, message="interrupted", finished_at=time.time()
                    )
            return self._end(RUN_INTERRUPTED)
        with self.store.lock:  # listed up front but never reached (a later group after a failure)
            for n in [
                n for n, t in self.store.state.tasks.items() if t.phase == "pending" and not t.started_at
            ]:
                del self.store.state.tasks[n]
        root = outcome.get("root")
        ok = root is not None and root.ok and not self.hook_failures
        return self._end(RUN_SUCCEEDED if ok else RUN_FAILED)

    def _workflow(self) -> NodeResult:
        """The whole run, holding the workflow-level `synchronization` locks (sync.py) throughout."""
        where = "spec.synchronization"
        try:
            wanted = sync.requested(
                self.wf.spec.get("synchronization"), self.ctx.global_vars, self.ctx.values_dir, where
            )
        except WorkflowError as exc:
            return self._record(self.wf.entrypoint, ERRORED, str(exc))
        if not wanted:
            return self._workflow_body()
        locks_dir = self.ctx.locks_dir or self.ctx.run_dir.parent.parent / "locks"
        with sync.holding(wanted, locks_dir, self.groups.stopping) as held:
            if not held:
                return self._record(self.wf.entrypoint, INTERRUPTED, "interrupted")
            return self._workflow_body()

    def _workflow_body(self) -> NodeResult:
        spec = self.wf.spec
        entry = self.wf.templates[self.wf.entrypoint]
        arguments = spec.get("arguments") or {}
        args = {
            "parameters": dict(self.parameters),
            "artifacts": {
                a["name"]: {"raw": str(a["raw"].get("data", ""))}
                for a in arguments.get("artifacts") or []
                if "raw" in a
            },
        }
        name = self.wf.entrypoint if self.wf.kind_of(entry) in RUNNABLE else ""
        try:
            root = self.run_template(name, entry, args, f"entrypoint {self.wf.entrypoint!r}")
        except WorkflowError as exc:
            root = self._record(self.wf.entrypoint, ERRORED, str(exc))
        if self.deadline_hit.is_set():
            root.phase, root.message = FAILED, "workflow exceeded activeDeadlineSeconds"
        exit_template = spec.get("onExit") or ((spec.get("hooks") or {}).get("exit") or {}).get("template")
        if exit_template and not self.interrupted.is_set():
            self.groups.stopping.clear()
            hook = (spec.get("hooks") or {}).get("exit") or {"template": exit_template}
            failures = [
                {
                    "displayName": n.rpartition(".")[2],
                    "message": t.message,
                    "templateName": "",
                    "phase": ARGO_PHASE.get(t.phase, t.phase),
                    "podName": n,
                    "finishedAt": "",
                }
                for n, t in self.store.state.tasks.items()
                if t.phase in BAD
            ]
            self.ctx.global_vars.update(  # seen by every template the exit handler runs
                {
                    "workflow.status": "Succeeded"
                    if root.ok
                    else ("Error" if root.phase == ERRORED else "Failed"),
                    "workflow.failures": json.dumps(failures),
                    "workflow.duration": f"{time.time() - self.store.state.created_at:.6f}",
                }
            )
            variables = dict(self.ctx.global_vars)
            exit_node = self.run_hook("onExit", hook, variables, "workflow")
            if root.ok and not exit_node.ok:
                root = copy.copy(root)
                root.phase, root.message = exit_node.phase, f"exit handler: {exit_node.message}"
        return root

    def _end(self, phase: str) -> str:
        with self.store.lock:
            self.store.state.phase = phase
            self.store.state.finished_at = time.time()
            self.store.save()
        return phase


def _continues(spec: dict, result: NodeResult) -> bool:
    continue_on = spec.get("continueOn") or {}
    return bool(continue_on.get("failed" if result.phase == FAILED else "error"))


def _slots(template: dict) -> threading.BoundedSemaphore | None:
    """The template's `parallelism` as a semaphore its children share (None when unlimited)."""
    limit = template.get("parallelism")
    return threading.BoundedSemaphore(int(limit)) if limit not in (None, "", 0, "0") else None


def _output_defaults(template: dict) -> dict[str, str]:
    """What a skipped node's outputs are: the `valueFrom.default` of its output parameters."""
    found = {}
    for spec in (template.get("outputs") or {}).get("parameters") or []:
        default = (spec.get("valueFrom") or {}).get("default")
        if default is not None:
            found[spec["name"]] = str(default)
    return found


def _from_skipped(text: str, variables: dict[str, str]) -> bool:
    """Whether every unresolved `{{steps.X...}}`/`{{tasks.X...}}` in text names a skipped/omitted node."""
    from pipelines.local_runner.substitution import references

    missing = [r for r in references(text) if r not in variables]
    return bool(missing) and all(
        r.split(".")[0] in ("steps", "tasks")
        and variables.get(".".join(r.split(".")[:2]) + ".status") in ("Skipped", "Omitted")
        for r in missing
    )
