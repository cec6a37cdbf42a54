"""Schedule a workflow's DAG tasks locally: dependency order, independent tasks in parallel.

The main thread decides (depends -> omitted, when -> skipped, else start a thread running
`task.execute`); task threads report back through a queue. Argo's failFast holds: after a
failure nobody handles (no `continueOn.failed`, no `depends` on `X.Failed`), no new task starts.
"""

from __future__ import annotations

import queue
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from pipelines.local_runner.cache import Cache
from pipelines.local_runner.depends import (
    CACHED,
    ERRORED,
    FAILED,
    FINISHED,
    OMITTED,
    SKIPPED,
    SUCCEEDED,
    depends_expression,
    evaluate_depends,
    handles_failure,
)
from pipelines.local_runner.errors import WorkflowError
from pipelines.local_runner.expressions import evaluate_bool
from pipelines.local_runner.process import ProcessGroups
from pipelines.local_runner.state import (
    PENDING,
    RUN_FAILED,
    RUN_INTERRUPTED,
    RUN_SUCCEEDED,
    StateStore,
    TaskState,
)
from pipelines.local_runner.substitution import substitute
from pipelines.local_runner.task import INTERRUPTED, TaskContext, execute, resolve_task
from pipelines.local_runner.workflow import RUNNABLE, Workflow

ARGO_PHASE = {
    SUCCEEDED: "Succeeded",
    CACHED: "Succeeded",
    FAILED: "Failed",
    ERRORED: "Error",
    SKIPPED: "Skipped",
    OMITTED: "Omitted",
    INTERRUPTED: "Failed",
}


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
    ):
        self.wf = wf
        self.store = store
        self.run_dir = Path(run_dir)
        self.groups = ProcessGroups()
        self.events: queue.Queue[str] = queue.Queue()
        self.interrupted = threading.Event()
        self.on_change = on_change or (lambda name: None)
        state = store.state
        parameters = state.parameters if parameters is None else parameters  # e.g. a started server's URL
        global_vars = {f"workflow.parameters.{k}": v for k, v in parameters.items()}
        global_vars.update(
            {
                "workflow.name": state.workflow_name,
                "workflow.uid": state.workflow_uid,
                "workflow.namespace": "local",
                "workflow.serviceAccountName": "local",
                "workflow.creationTimestamp": time.strftime(
                    "%Y-%m-%dT%H:%M:%SZ", time.gmtime(state.created_at)
                ),
            }
        )
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
            on_change=self._task_changed,
        )
        self.threads: dict[str, threading.Thread] = {}

    # ---- reporting --------------------------------------------------------------------------
    def _task_changed(self, name: str) -> None:
        self.on_change(name)

    def _finish(self, name: str, phase: str, message: str = "") -> None:
        self.store.update_task(name, phase=phase, message=message, finished_at=time.time())
        self.on_change(name)

    # ---- decisions --------------------------------------------------------------------------
    def _phases(self) -> dict[str, str]:
        return {name: t.phase for name, t in self.store.state.tasks.items()}

    def _variables(self, name: str) -> dict[str, str]:
        variables = dict(self.ctx.global_vars)
        for upstream in self.wf.ancestors(name):
            t: TaskState = self.store.state.tasks[upstream]
            prefix = f"tasks.{upstream}"
            variables[f"{prefix}.status"] = ARGO_PHASE.get(t.phase, t.phase)
            if t.exit_code is not None:
                variables[f"{prefix}.exitCode"] = str(t.exit_code)
            if t.phase in (SUCCEEDED, CACHED):
                variables.update({f"{prefix}.outputs.parameters.{k}": v for k, v in t.parameters.items()})
                if t.result is not None:
                    variables[f"{prefix}.outputs.result"] = t.result
        return variables

    def _unhandled_failure(self) -> str | None:
        for name, t in self.store.state.tasks.items():
            if t.phase not in (FAILED, ERRORED, INTERRUPTED):
                continue
            if self.wf.tasks[name].get("continueOn", {}).get("failed" if t.phase == FAILED else "error"):
                continue
            if any(handles_failure(depends_expression(spec), name) for spec in self.wf.tasks.values()):
                continue
            return name
        return None

    def _start_ready(self) -> None:
        phases = self._phases()
        failed = self._unhandled_failure()
        for name, spec in self.wf.tasks.items():
            if phases[name] != PENDING or name in self.threads:
                continue
            upstream = self.wf.upstream[name]
            if any(phases[u] not in FINISHED for u in upstream):
                continue
            if failed is not None:
                self._finish(name, OMITTED, f"not started: {failed} failed")
                continue
            expression = depends_expression(spec)
            if expression and not evaluate_depends(expression, phases):
                self._finish(name, OMITTED, f"depends {expression!r} is false")
                continue
            if self._at_limit():
                continue
            try:
                variables = self._variables(name)
                if spec.get("when") is not None:
                    when = substitute(str(spec["when"]), variables, f"task {name!r} when")
                    if not evaluate_bool(when, variables):
                        self._finish(name, SKIPPED, f"when {when!r} is false")
                        continue
                template = self.wf.template_of(name)
                kind = self.wf.kind_of(template)
                if kind not in RUNNABLE:
                    raise WorkflowError(
                        f"template {template['name']!r} is a {kind} template, which cannot run locally; "
                        "choose parameters whose `when` skips this task (e.g. the local alternative)"
                    )
                produced = {
                    t: dict(s.artifacts)
                    for t, s in self.store.state.tasks.items()
                    if s.phase in (SUCCEEDED, CACHED)
                }
                resolved = resolve_task(name, spec, template, variables, produced)
            except WorkflowError as exc:
                self._finish(name, ERRORED, str(exc))
                failed = failed or name
                continue
            thread = threading.Thread(
                target=self._run_task, args=(resolved,), name=f"task-{name}", daemon=True
            )
            self.threads[name] = thread
            thread.start()

    def _run_task(self, resolved) -> None:
        try:
            execute(resolved, self.ctx)
        finally:
            self.events.put(resolved.name)

    # ---- the loop ---------------------------------------------------------------------------
    def _running(self) -> list[str]:
        return [n for n, t in self.threads.items() if t.is_alive()]

    def _at_limit(self) -> bool:
        return bool(self.wf.parallelism) and len(self._running()) >= int(self.wf.parallelism)

    def interrupt(self, *_args) -> None:
        """Signal handler: stop every step's process group; the loop then marks the run interrupted."""
        self.interrupted.set()
        self.groups.stopping.set()

    def run(self, install_signals: bool = True) -> str:
        previous = {}
        if install_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, self.interrupt)
        try:
            return self._loop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _loop(self) -> str:
        state = self.store.state
        while True:
            if self.interrupted.is_set():
                self.groups.terminate_all()
                for thread in self.threads.values():
                    thread.join(timeout=30)
                for name, t in state.tasks.items():
                    if t.phase not in FINISHED:
                        self.store.update_task(
                            name,
                            phase=INTERRUPTED if name in self.threads else PENDING,
                            message="interrupted",
                            finished_at=time.time(),
                        )
                return self._end(RUN_INTERRUPTED)
            self._start_ready()
            if all(t.phase in FINISHED for t in state.tasks.values()):
                return self._end(RUN_FAILED if self._unhandled_failure() else RUN_SUCCEEDED)
            try:
                self.events.get(timeout=0.2)
            except queue.Empty:
                pass

    def _end(self, phase: str) -> str:
        with self.store.lock:
            self.store.state.phase = phase
            self.store.state.finished_at = time.time()
            self.store.save()
        return phase
