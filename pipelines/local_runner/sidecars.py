"""A template's init containers (run in order before the main container; one failing errors the
step) and sidecars (started beside the main container, stopped once it exits), as local processes.

Like the main container they need a `command` (images are not run), share the step's file
system mapping and working directory, and log to `<task>.<container>.log`.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from pipelines.local_runner.process import ProcessGroups, run_attempt
from pipelines.local_runner.substitution import substitute
from shared.processes import terminate_group


def _argv(spec: dict, variables: dict[str, str], paths, where: str) -> list[str]:
    from pipelines.local_runner.task import _local_interpreter

    argv = list(spec.get("command") or []) + list(spec.get("args") or [])
    return _local_interpreter([paths.rewrite(substitute(str(a), variables, where)) for a in argv])


def _log(log_path: Path, container: str) -> Path:
    return log_path.with_name(f"{log_path.stem}.{container}.log")


def run_init_containers(
    template, variables, paths, ctx, where, log_path, *, env_of: Callable, cwd: Path
) -> None:
    from pipelines.local_runner.task import ERRORED, TaskFailure

    for spec in template.get("initContainers") or []:
        here = f"{where} init container {spec['name']!r}"
        env = env_of(spec, variables, paths, here, ctx.base_env, ctx.values_dir)
        attempt = run_attempt(
            _argv(spec, variables, paths, here), env, cwd, _log(log_path, spec["name"]), ctx.groups
        )
        if attempt.status != "Succeeded":
            raise TaskFailure(
                f"init container {spec['name']!r}: {attempt.message}", ERRORED, attempt.exit_code
            )


def start_sidecars(
    template, variables, paths, ctx, where, log_path, *, env_of: Callable, cwd: Path
) -> list[subprocess.Popen]:
    started = []
    for spec in template.get("sidecars") or []:
        here = f"{where} sidecar {spec['name']!r}"
        env = env_of(spec, variables, paths, here, ctx.base_env, ctx.values_dir)
        log = open(_log(log_path, spec["name"]), "ab")  # noqa: SIM115 - closed with the process
        try:
            proc = subprocess.Popen(
                _argv(spec, variables, paths, here),
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            log.write(f"[local-runner] cannot start sidecar: {exc}\n".encode())
            log.close()
            stop_sidecars(started, ctx.groups)
            from pipelines.local_runner.task import ERRORED, TaskFailure

            raise TaskFailure(
                f"sidecar {spec['name']!r}: cannot start: {exc.strerror or exc}", ERRORED
            ) from None
        proc.log = log  # type: ignore[attr-defined]
        ctx.groups.add(proc.pid, proc)
        started.append(proc)
    return started


def stop_sidecars(started: list[subprocess.Popen], groups: ProcessGroups) -> None:
    for proc in started:
        terminate_group(proc.pid, grace=2.0, proc=proc)
        proc.wait()
        groups.discard(proc.pid)
        proc.log.close()  # type: ignore[attr-defined]
