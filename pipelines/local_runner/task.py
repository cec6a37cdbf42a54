"""Prepare and execute one DAG task locally: inputs, path mapping, cache, attempts, outputs."""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.local_runner import engine_run, images, sync
from pipelines.local_runner.cache import Cache, cache_key, hash_path, link_tree, parse_duration
from pipelines.local_runner.depends import CACHED, ERRORED, FAILED, SUCCEEDED
from pipelines.local_runner.environment import step_environment
from pipelines.local_runner.errors import WorkflowError
from pipelines.local_runner.paths import PathMap, declared_paths, task_folder
from pipelines.local_runner.pod import (
    link_mounts,
    main_body,
    mount_paths,
    pod_spec_patch_effect,
    read_value,
    volume_sources,
    working_dir,
)
from pipelines.local_runner.process import ProcessGroups, run_attempt
from pipelines.local_runner.progress_view import step_env
from pipelines.local_runner.retry import RetryStrategy
from pipelines.local_runner.sidecars import run_init_containers, start_sidecars, stop_sidecars
from pipelines.local_runner.state import RETRYING, RUNNING, StateStore
from pipelines.local_runner.substitution import references, substitute

INTERRUPTED = "interrupted"
PYTHON_COMMANDS = ("python", "python3", "/usr/bin/python", "/usr/bin/python3", "/usr/local/bin/python")


@dataclass
class TaskContext:
    """What a task needs from the run: where things go and how to report."""

    run_dir: Path
    workdir: Path
    store: StateStore
    groups: ProcessGroups
    cache: Cache | None
    use_cache: bool
    global_vars: dict[str, str]
    default_retry: dict | None = None
    retries: bool = True  # False: ignore retryStrategy (fail fast while developing a step)
    # every step's environment under its declared env: the allowed host variables and the runner's
    # own (EMOTION_LOCAL_DIR); environment.py
    base_env: dict[str, str] = field(default_factory=dict)
    hashes: dict[str, str] = field(default_factory=dict)  # local artifact path -> content hash
    on_change: object = None  # callable(task_name) for the display
    values_dir: Path | None = None  # secrets/<name>/<key>, configmaps/<name>/<key> (--values-dir)
    volumes: dict[str, dict] = field(default_factory=dict)  # the workflow's spec.volumes by name
    claims_dir: Path | None = None  # persistentVolumeClaim folders (outlive runs)
    locks_dir: Path | None = None  # synchronization locks, shared by the runs of one local dir (sync.py)
    engine: engine_run.Engine | None = None  # None: steps run as processes; else in their images
    pod_security: dict = field(default_factory=dict)  # the workflow's spec.securityContext (engines only)

    def changed(self, name: str) -> None:
        if callable(self.on_change):
            self.on_change(name)


@dataclass
class ResolvedTask:
    """A task whose arguments are substituted and ready to run."""

    name: str
    template: dict
    parameters: dict[str, str]  # task argument parameters
    artifacts: dict[str, dict]  # task argument artifacts: name -> {"local": path} | {"raw": text}


class TaskFailure(Exception):
    def __init__(self, message: str, phase: str = FAILED, exit_code: int | None = None):
        super().__init__(message)
        self.phase = phase
        self.exit_code = exit_code


def _input_parameters(
    task: ResolvedTask, variables: dict[str, str], values_dir: Path | None = None
) -> dict[str, str]:
    values: dict[str, str] = {}
    for spec in task.template.get("inputs", {}).get("parameters", []):
        name = spec["name"]
        ref = (spec.get("valueFrom") or {}).get("configMapKeyRef")
        if name in task.parameters:
            values[name] = task.parameters[name]
        elif ref:
            where = f"task {task.name!r} input {name}"
            found = read_value(
                values_dir, "configMapKeyRef", ref["name"], ref["key"], bool(ref.get("optional")), where
            )
            if found is None and spec.get("default") is None:
                raise TaskFailure(
                    f"{where}: config map {ref['name']}/{ref['key']} is optional and absent", ERRORED
                )
            values[name] = found if found is not None else str(spec["default"])
        elif spec.get("value") is not None:
            values[name] = substitute(str(spec["value"]), variables, f"task {task.name!r} input {name}")
        elif spec.get("default") is not None:
            values[name] = substitute(str(spec["default"]), variables, f"task {task.name!r} input {name}")
        else:
            raise TaskFailure(
                f"input parameter {name!r} of template {task.template['name']!r} has no value", ERRORED
            )
    return values


def _input_artifacts(task: ResolvedTask, variables: dict[str, str]) -> dict[str, dict]:
    """name -> {"path", "local": source} or {"path", "raw": text}; absent optional artifacts left out."""
    resolved: dict[str, dict] = {}
    for spec in task.template.get("inputs", {}).get("artifacts", []):
        name = spec["name"]
        source = dict(task.artifacts.get(name, {}))
        if not source and spec.get("raw"):
            source = {"raw": substitute(str(spec["raw"].get("data", "")), variables, f"artifact {name}")}
        if not source:
            if spec.get("optional"):
                continue
            raise TaskFailure(
                f"input artifact {name!r} has no local source (only `from` task outputs and "
                "`raw` artifacts are available locally)",
                ERRORED,
            )
        if "path" not in spec:
            raise TaskFailure(f"input artifact {name!r} has no path", ERRORED)
        source["path"] = spec["path"]
        resolved[name] = source
    return resolved


def _globals_used(template: dict, global_vars: dict[str, str]) -> dict[str, str]:
    text = str(template)
    return {
        ref: global_vars[ref]
        for ref in references(text)
        if ref.startswith("workflow.parameters.") and ref in global_vars
    }


def _siblings(local: Path, shown: int = 12) -> str:
    """What the step did write next to a missing output file, to spot a renamed field at once."""
    if not local.parent.is_dir():
        return ""
    names = sorted(p.name for p in local.parent.iterdir())
    more = ", ..." if len(names) > shown else ""
    return f" (found there: {', '.join(names[:shown])}{more})" if names else ""


def _read_output_parameters(template: dict, paths: PathMap, variables: dict[str, str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for spec in template.get("outputs", {}).get("parameters", []):
        name = spec["name"]
        value_from = spec.get("valueFrom") or {}
        if "path" in value_from:
            local = paths.local(value_from["path"])
            if local.is_file():
                values[name] = local.read_text(errors="replace").rstrip("\n")
            elif value_from.get("default") is not None:
                values[name] = str(value_from["default"])
            else:
                raise TaskFailure(
                    f"output parameter {name!r}: {value_from['path']} was not written{_siblings(local)}"
                )
        elif spec.get("value") is not None:
            values[name] = substitute(str(spec["value"]), variables, f"output parameter {name}")
        elif value_from.get("default") is not None:
            values[name] = str(value_from["default"])
        else:
            raise TaskFailure(f"output parameter {name!r}: only valueFrom.path is supported locally", ERRORED)
    return values


def _output_artifacts(template: dict, paths: PathMap) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for spec in template.get("outputs", {}).get("artifacts", []):
        local = paths.local(spec["path"])
        if local.exists():
            found[spec["name"]] = local
        elif not spec.get("optional"):
            raise TaskFailure(f"output artifact {spec['name']!r}: {spec['path']} was not written")
    return found


def _env(
    body: dict,
    variables: dict[str, str],
    paths: PathMap,
    where: str,
    base: dict[str, str],
    values_dir: Path | None = None,
    on_host: bool = True,
) -> dict[str, str]:
    """The container's declared env over `base` (allowed host and runner variables): environment.py.
    On the host, container paths in values become the task's local paths; in its image they stay."""

    def value(name: str, text: str) -> str:
        text = substitute(text, variables, f"{where} env {name}")
        return paths.rewrite(text) if on_host else text

    return step_environment(body, value, base, values_dir, where, on_host=on_host)


def _local_interpreter(argv: list[str]) -> list[str]:
    """The image's `python` is this environment's interpreter locally (the venv the runner runs in)."""
    if argv and argv[0] in PYTHON_COMMANDS:
        return [sys.executable, *argv[1:]]
    return argv


def _argv(template: dict, variables: dict[str, str], paths: PathMap, task_dir: Path, where: str) -> list[str]:
    if "container" in template:
        body = template["container"]
        command = list(body.get("command") or images.entrypoint(str(body.get("image", ""))) or [])
        if not command:
            raise TaskFailure(
                f"{where}: container has no command (images are ignored locally, so the "
                "template must name its command)",
                ERRORED,
            )
        argv = command + list(body.get("args") or [])
        return images.program(
            _local_interpreter([paths.rewrite(substitute(str(a), variables, where)) for a in argv])
        )
    body = template["script"]
    source = paths.rewrite(substitute(str(body.get("source", "")), variables, where))
    script = task_dir / "script"
    script.write_text(source)
    script.chmod(0o755)  # Argo's script file is executable (`command: [sh, -c]` runs it by path)
    command = [paths.rewrite(substitute(str(a), variables, where)) for a in body.get("command") or ["sh"]]
    return (
        command
        + [str(script)]
        + [paths.rewrite(substitute(str(a), variables, where)) for a in body.get("args") or []]
    )


def _in_image(
    template: dict,
    task: str,
    variables: dict[str, str],
    task_dir: Path,
    engine: engine_run.Engine,
    ctx: TaskContext,
    image: str,
    where: str,
) -> tuple[list[str], dict[str, str], str]:
    """(engine argv, environment of the engine client, container name) of one attempt in the image."""
    body = main_body(template)
    if "container" in template:
        command = [substitute(str(a), variables, where) for a in body.get("command") or []]
    else:  # a script template: its source at Argo's path, run by the template's command
        script = task_dir / "fs" / engine_run.SCRIPT_PATH.lstrip("/")
        script.write_text(substitute(str(body.get("source", "")), variables, where))
        script.chmod(0o755)
        command = [substitute(str(a), variables, where) for a in body.get("command") or ["sh"]]
        command.append(engine_run.SCRIPT_PATH)
    args = [substitute(str(a), variables, where) for a in body.get("args") or []]
    env = {
        **_env(body, variables, PathMap(task_dir, []), where, engine.env, ctx.values_dir, on_host=False),
        **step_env(task_dir),
    }
    sources = volume_sources(template, ctx.volumes, ctx.run_dir, task_dir, ctx.values_dir, ctx.claims_dir)
    mounts = engine_run.mounts(
        engine, task_dir / "fs", sources, engine_run.memory_volumes(template, ctx.volumes)
    )
    name = engine_run.container_name(task)
    pod_security = {**ctx.pod_security, **(template.get("securityContext") or {})}
    argv = engine_run.step_argv(
        engine,
        body,
        command,
        args,
        image=image,
        env=env,
        volume_mounts=mounts,
        name=name,
        pod_security=pod_security,
    )
    client_env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "XDG_RUNTIME_DIR", "TMPDIR")}
    return argv, client_env, name


def _prepare_fs(paths: PathMap, template: dict, inputs: dict[str, dict]) -> None:
    """`/tmp` and the parent folders of every declared path; input artifacts linked (or raw ones written)."""
    paths.local("/tmp").mkdir(parents=True, exist_ok=True)  # every container has a /tmp
    for path in declared_paths(template):
        paths.local(path).parent.mkdir(parents=True, exist_ok=True)
    for name, source in inputs.items():
        target = paths.local(source["path"])
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.is_dir():
            shutil.rmtree(target)
        if "raw" in source:
            target.write_text(source["raw"])
        else:
            local = Path(source["local"])
            if not local.exists():
                raise TaskFailure(f"input artifact {name!r}: {local} does not exist", ERRORED)
            target.symlink_to(local.resolve(), target_is_directory=local.is_dir())


def execute(task: ResolvedTask, ctx: TaskContext) -> None:
    """Run `task` to completion, recording its phase and outputs in the run state."""
    name = task.name
    task_dir = ctx.run_dir / "tasks" / task_folder(name)
    shutil.rmtree(task_dir, ignore_errors=True)
    fs = task_dir / "fs"
    fs.mkdir(parents=True)
    log_path = ctx.run_dir / "logs" / f"{name}.log"
    template = copy.deepcopy(task.template)
    where = f"task {name!r} (template {template['name']!r})"
    ctx.store.update_task(
        name, phase=RUNNING, started_at=time.time(), finished_at=None, attempts=0, exit_code=None, message=""
    )
    ctx.changed(name)
    held = contextlib.ExitStack()  # synchronization locks, held until the step is done
    try:
        paths = PathMap(fs, declared_paths(template) + mount_paths(template))
        variables = dict(ctx.global_vars)
        inputs = _input_parameters(task, variables, ctx.values_dir)
        variables.update({f"inputs.parameters.{k}": v for k, v in inputs.items()})
        artifacts = _input_artifacts(task, variables)
        for section in ("inputs", "outputs"):
            for spec in template.get(section, {}).get("artifacts", []):
                if spec.get("path"):
                    variables[f"{section}.artifacts.{spec['name']}.path"] = spec["path"]
        for spec in template.get("outputs", {}).get("parameters", []):
            if (spec.get("valueFrom") or {}).get("path"):
                variables[f"outputs.parameters.{spec['name']}.path"] = spec["valueFrom"]["path"]

        key = None
        memoize = template.get("memoize")
        if memoize and ctx.cache is not None:
            hashes = {}
            for art, source in artifacts.items():
                local = source.get("local")
                if local is None:
                    hashes[art] = source["raw"]
                else:
                    hashes[art] = ctx.hashes.get(local) or hash_path(Path(local))
                    ctx.hashes[local] = hashes[art]
            memo_key = substitute(str(memoize.get("key", "")), variables, f"{where} memoize.key")
            key = cache_key(template, memo_key, inputs, _globals_used(template, ctx.global_vars), hashes)
            entry = ctx.cache.lookup(key, parse_duration(memoize.get("maxAge"))) if ctx.use_cache else None
            if entry is not None:
                _serve_from_cache(task, ctx, paths, key, entry, log_path)
                ctx.changed(name)
                return

        _prepare_fs(paths, template, artifacts)
        body = main_body(template)
        image = substitute(str(body.get("image", "")), variables, f"{where} image")
        engine = ctx.engine.for_task(name, template["name"]) if ctx.engine is not None else None
        if engine is not None:
            engine_run.refuse_unsupported(template, where)
            if not engine.has_image(image):
                raise TaskFailure(
                    f"{where}: image {image} is not in {engine.name}'s store (build it with "
                    "`make images`; run with -p image-registry=localhost -p image-tag=$(git rev-parse HEAD))",
                    ERRORED,
                )
        else:
            link_mounts(
                fs,
                volume_sources(template, ctx.volumes, ctx.run_dir, task_dir, ctx.values_dir, ctx.claims_dir),
            )
        cwd = working_dir(template, fs, ctx.workdir, image)
        # no strategy: no retry; `retryStrategy: {}` retries until success, as in Argo
        retry_spec = template.get("retryStrategy")
        if retry_spec is None:
            retry_spec = ctx.default_retry
        if retry_spec is not None:
            retry_spec = dict(retry_spec)
            if retry_spec.get("expression"):  # `{{inputs.parameters.x}}` inside it, as Argo substitutes
                retry_spec["expression"] = substitute(str(retry_spec["expression"]), variables, where)
        retry = RetryStrategy.from_spec(retry_spec, where)
        if not ctx.retries:
            retry = RetryStrategy()
        timeout, timeout_field = _deadline(template, variables, where)
        if template.get("podSpecPatch"):
            pod_spec_patch_effect(substitute(str(template["podSpecPatch"]), variables, where), where)
        extras = (template, variables, paths, ctx, where, log_path)
        wanted = sync.requested(template.get("synchronization"), variables, ctx.values_dir, where)
        if wanted:

            def waiting(lock: str) -> None:
                ctx.store.update_task(name, message=f"waiting for {lock}")
                ctx.changed(name)

            locks_dir = ctx.locks_dir or ctx.run_dir.parent.parent / "locks"
            if not held.enter_context(sync.holding(wanted, locks_dir, ctx.groups.stopping, waiting)):
                raise TaskFailure("interrupted", INTERRUPTED)
        if engine is None:
            run_init_containers(*extras, env_of=_env, cwd=cwd)
        first_start = time.monotonic()
        attempts = 0
        while True:
            attempts += 1
            variables["retries"] = str(attempts - 1)  # Argo's {{retries}}: this attempt's retry number
            container = None
            if engine is not None:
                argv, env, container = _in_image(
                    template, name, variables, task_dir, engine, ctx, image, where
                )
                cwd = task_dir
            else:
                argv = _argv(template, variables, paths, task_dir, where)
                env = {
                    **_env(body, variables, paths, where, ctx.base_env, ctx.values_dir),
                    **step_env(task_dir),
                }
                if images.uses_shims(image):
                    env["PATH"] = os.pathsep.join([str(images.SHIMS), env["PATH"]])
            ctx.store.update_task(name, attempts=attempts, phase=RUNNING, message="")
            ctx.changed(name)
            with open(log_path, "ab") as log:
                log.write(f"[local-runner] attempt {attempts}: {' '.join(argv)}\n".encode())
            sidecars = [] if engine is not None else start_sidecars(*extras, env_of=_env, cwd=cwd)
            try:
                attempt = run_attempt(argv, env, cwd, log_path, ctx.groups, timeout, timeout_field)
            finally:
                stop_sidecars(sidecars, ctx.groups)
                if container is not None:  # the engine client may be gone (killed), the container not
                    engine.remove(container)
            if ctx.groups.stopping.is_set():
                raise TaskFailure("interrupted", INTERRUPTED, attempt.exit_code)
            if attempt.status == "Succeeded":
                break
            again, delay = retry.should_retry(attempt, attempts, time.monotonic() - first_start)
            if not again:
                raise TaskFailure(
                    attempt.message, FAILED if attempt.status == "Failed" else ERRORED, attempt.exit_code
                )
            ctx.store.update_task(
                name,
                phase=RETRYING,
                exit_code=attempt.exit_code,
                message=f"{attempt.message}; retrying in {delay:g}s",
            )
            ctx.changed(name)
            if ctx.groups.stopping.wait(delay):
                raise TaskFailure("interrupted", INTERRUPTED, attempt.exit_code)

        outputs = _read_output_parameters(template, paths, variables)
        produced = _output_artifacts(template, paths)
        result = attempt.stdout.strip()
        if key is not None:
            ctx.cache.store(key, name, outputs, result, produced)
        ctx.store.update_task(
            name,
            phase=SUCCEEDED,
            exit_code=0,
            finished_at=time.time(),
            cache_key=key,
            parameters=outputs,
            artifacts={k: str(v) for k, v in produced.items()},
            result=result,
            message="",
        )
    except TaskFailure as exc:
        _fail(name, ctx, log_path, exc.phase, str(exc), exc.exit_code)
    except WorkflowError as exc:
        _fail(name, ctx, log_path, ERRORED, str(exc), None)
    except Exception as exc:  # a runner bug must not hang the run: report it on the task
        _fail(name, ctx, log_path, ERRORED, f"local runner error: {exc.__class__.__name__}: {exc}", None)
    finally:
        held.close()
    ctx.changed(name)


def _deadline(template: dict, variables: dict[str, str], where: str) -> tuple[float | None, str]:
    """The step's time limit: the smaller of activeDeadlineSeconds and `timeout`, and which it is."""
    limits = []
    for field_name in ("activeDeadlineSeconds", "timeout"):
        value = template.get(field_name)
        if value not in (None, ""):
            text = substitute(str(value), variables, f"{where} {field_name}")
            try:
                limits.append((parse_duration(text), field_name))
            except ValueError as exc:
                raise WorkflowError(f"{where}: {field_name}: {exc}") from None
    if not limits:
        return None, "activeDeadlineSeconds"
    return min(limits)


def _fail(name: str, ctx: TaskContext, log_path: Path, phase: str, message: str, code: int | None) -> None:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(f"[local-runner] {phase}: {message}\n".encode())
    ctx.store.update_task(name, phase=phase, message=message, exit_code=code, finished_at=time.time())


def _serve_from_cache(
    task: ResolvedTask, ctx: TaskContext, paths: PathMap, key: str, entry: dict, log_path: Path
) -> None:
    produced: dict[str, str] = {}
    for spec in task.template.get("outputs", {}).get("artifacts", []):
        if spec["name"] in entry["artifacts"]:
            target = paths.local(spec["path"])
            link_tree(ctx.cache.artifact_path(key, spec["name"]), target)
            produced[spec["name"]] = str(target)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(f"[local-runner] memoized: served from {ctx.cache.root / key}\n".encode())
    ctx.store.update_task(
        task.name,
        phase=CACHED,
        exit_code=0,
        finished_at=time.time(),
        cache_key=key,
        parameters=dict(entry["parameters"]),
        artifacts=produced,
        result=entry.get("result"),
        message="memoized",
    )
