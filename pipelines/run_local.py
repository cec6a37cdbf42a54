"""Run a compiled Argo workflow on this machine: `python -m pipelines.run_local WORKFLOW.yaml`.

Each container/script step runs as a local process (images are not run) with Argo's semantics:
steps and DAG templates, loops, `when`/`depends`, exit handlers, retries, timeouts, memoization
(`.local/cache/`), per-run state for `--resume`, a live view and a summary (`.local/runs/<run>/`).
A workflow field the runner does not implement is refused before anything runs, naming it.

Exit codes: 0 succeeded, 1 a task failed, 2 invalid workflow/parameters, 130 interrupted.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from pipelines.local_runner.app import EXIT_BAD_INPUT, RunRequest, execute_run
from pipelines.local_runner.errors import WorkflowError
from shared.settings import DEFAULT_LOCAL_DIR

app = typer.Typer(add_completion=False, help=__doc__, rich_markup_mode=None)


@app.command()
def main(
    workflow: Path = typer.Argument(..., help="Compiled Workflow/WorkflowTemplate YAML"),
    param: list[str] = typer.Option([], "--param", "-p", help="Override a workflow parameter: NAME=VALUE"),
    profile: str | None = typer.Option(None, help="Parameter profile for one machine (e.g. demo)"),
    local_dir: Path = typer.Option(
        DEFAULT_LOCAL_DIR, envvar="EMOTION_LOCAL_DIR", help="Folder for runs, cache and local services"
    ),
    resume: str | None = typer.Option(None, help="Resume RUN_ID: rerun only its tasks that did not succeed"),
    resume_last: bool = typer.Option(False, "--resume-last", help="Resume the most recent run"),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not serve memoized tasks from the cache"),
    no_retry: bool = typer.Option(False, "--no-retry", help="Ignore retryStrategy: fail at the first error"),
    mlflow_server: bool = typer.Option(
        False, "--mlflow-server", help="Serve the sqlite MLflow store over HTTP for this run"
    ),
    mlflow_port: int = typer.Option(5050, help="Port of --mlflow-server on 127.0.0.1"),
    smoke: bool = typer.Option(True, help="POST a smoke request to a deployed server at the end"),
    values_dir: Path | None = typer.Option(
        None,
        "--values-dir",
        help="Folder with the secrets and config maps steps read: secrets/NAME/KEY, configmaps/NAME/KEY "
        "(never read from a cluster)",
    ),
    pass_env: list[str] = typer.Option(
        [],
        "--pass-env",
        help="Give the steps this variable of the runner's environment (repeatable); steps otherwise "
        "see only what their template declares plus PATH, HOME, locale, TZ, TMPDIR, the virtualenv",
    ),
    engine: str = typer.Option(
        "process",
        help="Run each step as a process of this checkout (process), or in its image with podman or docker "
        "(build them with `make images`; -p image-registry=localhost -p image-tag=<commit>)",
    ),
    volume: list[str] = typer.Option(
        [],
        "--volume",
        help="With --engine: also mount HOST_PATH:/CONTAINER/PATH[:ro] into every step (repeatable); "
        "the local dir is mounted at its own path",
    ),
    on_host: list[str] = typer.Option(
        [],
        "--on-host",
        help="With --engine: run this task (or template) as a process anyway (repeatable), e.g. deploy, "
        "whose local server must outlive its step",
    ),
) -> None:
    if resume and resume_last:
        raise typer.BadParameter("use --resume RUN_ID or --resume-last, not both")
    console = Console(highlight=False, soft_wrap=True)
    request = RunRequest(
        workflow=workflow,
        params=list(param),
        profile=profile,
        local_dir=local_dir,
        resume=resume,
        resume_last=resume_last,
        no_cache=no_cache,
        no_retry=no_retry,
        mlflow_server=mlflow_server,
        mlflow_port=mlflow_port,
        smoke=smoke,
        values_dir=values_dir,
        pass_env=list(pass_env),
        engine=engine,
        volumes=list(volume),
        on_host=list(on_host),
    )
    try:
        code = execute_run(request, console)
    except WorkflowError as exc:
        Console(stderr=True, highlight=False).print(f"[bold red]error:[/] {exc}", markup=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    raise typer.Exit(code)


if __name__ == "__main__":
    app()
