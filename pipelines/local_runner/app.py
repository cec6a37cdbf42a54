"""What `python -m pipelines.run_local` does: start or resume a run, run it, report it."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import string
import threading
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from pipelines.local_runner.depends import CACHED, ERRORED, FAILED, SUCCEEDED
from pipelines.local_runner.engine_run import ENGINES, Engine, parse_volume
from pipelines.local_runner.environment import host_variables
from pipelines.local_runner.errors import WorkflowError
from pipelines.local_runner.preflight import Preflight
from pipelines.local_runner.progress_view import make_progress_display
from pipelines.local_runner.runner import Runner
from pipelines.local_runner.services import mlflow_server
from pipelines.local_runner.state import (
    RUN_FAILED,
    RUN_INTERRUPTED,
    RUN_RUNNING,
    RUN_SUCCEEDED,
    RunState,
    StateStore,
    TaskState,
    latest_run,
    load_state,
)
from pipelines.local_runner.summary import build_summary, print_summary, write_summary
from pipelines.local_runner.workflow import Workflow, load_workflow
from pipelines.profiles import profile_parameters
from shared.containers import EngineMissing

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
TRACKING_PARAM = "mlflow-tracking-uri"
LOCAL_DIR_ENV = "EMOTION_LOCAL_DIR"  # shared.settings.Settings.local_dir: where steps keep local state
LOG_TAIL_LINES = 20


@dataclass
class RunRequest:
    workflow: Path
    params: list[str] = field(default_factory=list)
    profile: str | None = None
    local_dir: Path = field(default_factory=lambda: Path(os.environ.get(LOCAL_DIR_ENV, ".local")))
    resume: str | None = None
    resume_last: bool = False
    no_cache: bool = False
    no_retry: bool = False
    mlflow_server: bool = False
    mlflow_port: int = 5050
    workdir: Path = field(default_factory=Path.cwd)
    smoke: bool = True
    values_dir: Path | None = None  # secrets/<name>/<key> and configmaps/<name>/<key> for the steps
    pass_env: list[str] = field(default_factory=list)  # host variables the steps may see (--pass-env)
    engine: str = "process"  # process | podman | docker (engine_run.py)
    volumes: list[str] = field(default_factory=list)  # --volume SRC:DST[:ro], with an engine
    on_host: list[str] = field(default_factory=list)  # --on-host TASK: a process despite --engine

    def base_env(self, local_dir: Path) -> dict[str, str]:
        """What every step's environment starts from: allowed host variables + the runner's own."""
        return {**host_variables(passed=self.pass_env), LOCAL_DIR_ENV: str(local_dir)}

    def image_env(self, local_dir: Path) -> dict[str, str]:
        """The same in an image, whose PATH, HOME and locale are the image's: only --pass-env names."""
        return {**{k: os.environ[k] for k in self.pass_env if k in os.environ}, LOCAL_DIR_ENV: str(local_dir)}

    def container_engine(self, local_dir: Path) -> Engine | None:
        if self.engine not in ENGINES:
            raise WorkflowError(f"--engine {self.engine!r}: one of {', '.join(ENGINES)}")
        if self.engine == "process":
            if self.volumes or self.on_host:
                raise WorkflowError("--volume and --on-host need --engine podman or docker")
            return None
        for text in self.volumes:
            parse_volume(text)
        try:
            engine = Engine(
                self.engine, local_dir, self.image_env(local_dir), list(self.volumes), set(self.on_host)
            )
            engine.command()
        except EngineMissing as exc:
            raise WorkflowError(str(exc)) from None
        return engine


def parse_params(items: list[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise WorkflowError(f"--param {item!r}: expected NAME=VALUE")
        values[key.strip()] = value
    return values


def _new_state(wf: Workflow, request: RunRequest, local_dir: Path) -> RunState:
    overrides = parse_params(request.params)
    try:
        profile = profile_parameters(request.profile, local_dir, set(wf.declared)) if request.profile else {}
    except KeyError as exc:
        raise WorkflowError(str(exc.args[0])) from None
    parameters = wf.resolve_parameters(wf.values_from(request.values_dir), profile, overrides)
    Preflight(wf, parameters, request.values_dir, request.base_env(local_dir)).run()
    suffix = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(5))
    name = f"{wf.name}-{suffix}"
    import uuid

    state = RunState(
        run_id=name,
        workflow=str(wf.source),
        workflow_name=name,
        workflow_uid=str(uuid.uuid4()),
        parameters=parameters,
    )
    state.tasks = {task: TaskState() for task in wf.tasks}
    return state


def _resumed_state(wf: Workflow, request: RunRequest, runs_dir: Path) -> RunState:
    if request.params:
        raise WorkflowError(
            "--param cannot change a resumed run's parameters; start a new run instead "
            "(memoized steps are served from the cache)"
        )
    run_id = request.resume or latest_run(runs_dir)
    state = load_state(runs_dir / run_id)
    if set(state.parameters) != set(wf.declared):
        raise WorkflowError(f"run {run_id} was made from a workflow with other parameters than {wf.source}")
    Preflight(wf, state.parameters, request.values_dir, request.base_env(runs_dir.parent)).run()
    kept = {name: TaskState() for name in wf.tasks}
    for name, old in state.tasks.items():  # every node that succeeded and still has its artifacts
        if old.phase in (SUCCEEDED, CACHED) and all(Path(p).exists() for p in old.artifacts.values()):
            kept[name] = old
    state.tasks = kept
    state.phase, state.finished_at = RUN_RUNNING, None
    return state


def _report_failures(state: RunState, run_dir: Path, console: Console) -> None:
    for name, task in state.tasks.items():
        if task.phase not in (FAILED, ERRORED):
            continue
        code = "" if task.exit_code is None else f" (exit code {task.exit_code})"
        console.print(
            f"\n[bold red]task {name} {task.phase}{code}[/]: {task.message}", markup=True, highlight=False
        )
        log = run_dir / "logs" / f"{name}.log"
        if log.is_file():
            lines = log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
            console.print(f"[dim]last {len(lines)} lines of {log}:[/]", markup=True)
            console.print("\n".join(lines), markup=False, highlight=False)


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM stops a run like Ctrl-C does (the runner installs its own handlers while tasks run)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(*_args):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _served_store(request: RunRequest, parameters: dict[str, str], local_dir: Path) -> str | None:
    """The sqlite store `--mlflow-server` serves (None without it): the run's own, else .local's."""
    if not request.mlflow_server:
        return None
    uri = parameters.get(TRACKING_PARAM, "")
    return uri if uri.startswith("sqlite:") else f"sqlite:///{local_dir / 'mlflow.db'}"


def _run_with_services(
    request: RunRequest, wf: Workflow, store: StateStore, run_dir: Path, local_dir: Path, console: Console
) -> str:
    """Start what the run needs (an MLflow server when asked), run the DAG, stop them again."""
    state = store.state
    with contextlib.ExitStack() as stack:
        runtime = dict(state.parameters)
        backend = _served_store(request, runtime, local_dir)
        if backend is not None:
            url = stack.enter_context(
                mlflow_server(
                    backend,
                    local_dir / "mlartifacts",
                    run_dir / "logs" / "_mlflow-server.log",
                    port=request.mlflow_port,
                )
            )
            console.print(f"  mlflow server: {url} (backed by {backend})", highlight=False)
            if TRACKING_PARAM in runtime:
                runtime[TRACKING_PARAM] = url
        display = make_progress_display(state, run_dir, console)
        runner = Runner(
            wf,
            store,
            run_dir,
            workdir=request.workdir,
            cache_dir=local_dir / "cache",
            use_cache=not request.no_cache,
            on_change=display.changed,
            parameters=runtime,
            base_env=request.base_env(local_dir),
            retries=not request.no_retry,
            values_dir=request.values_dir,
            engine=request.container_engine(local_dir),
        )
        display.start()
        try:
            return runner.run()
        finally:
            display.stop()


def execute_run(request: RunRequest, console: Console | None = None) -> int:
    """Validate, run and summarise; return the process exit code. Raises WorkflowError on bad input."""
    console = console or Console(highlight=False, soft_wrap=True)
    wf = load_workflow(request.workflow)
    local_dir = Path(request.local_dir).resolve()
    runs_dir = local_dir / "runs"
    resuming = bool(request.resume or request.resume_last)
    state = _resumed_state(wf, request, runs_dir) if resuming else _new_state(wf, request, local_dir)
    run_dir = runs_dir / state.run_id
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    if not resuming:
        shutil.copyfile(wf.source, run_dir / "workflow.yaml")
    store = StateStore(run_dir, state)
    store.save()
    verb = "resuming" if resuming else "starting"
    console.print(
        f"{verb} run [bold]{state.run_id}[/] of {wf.source} (uid {state.workflow_uid})", markup=True
    )
    console.print(f"  run folder: {run_dir}", highlight=False)

    try:
        with _sigterm_as_interrupt():
            phase = _run_with_services(request, wf, store, run_dir, local_dir, console)
    except KeyboardInterrupt:  # Ctrl-C while services were starting, before any task ran
        phase = RUN_INTERRUPTED
        with store.lock:
            state.phase = RUN_INTERRUPTED
            store.save()
    served_store = _served_store(request, state.parameters, local_dir)

    if phase == RUN_FAILED:
        _report_failures(state, run_dir, console)
    summary = build_summary(
        state, run_dir, smoke=request.smoke, local_dir=local_dir, tracking_uri=served_store
    )
    write_summary(summary, run_dir)
    print_summary(summary, console)
    if phase == RUN_INTERRUPTED:
        console.print(
            f"interrupted; resume with: python -m pipelines.run_local {wf.source} --resume {state.run_id}",
            highlight=False,
        )
        return EXIT_INTERRUPTED
    if phase != RUN_SUCCEEDED:
        console.print(
            f"resume after fixing with: python -m pipelines.run_local {wf.source} --resume-last",
            highlight=False,
        )
        return EXIT_FAILED
    return EXIT_OK
