"""Container target: the serving image on this machine's container engine (Podman or Docker), run as
the Deployment's pod runs it, health-gated.

The container is the `server` container `k8s_render.render_deployment` renders, turned into engine
flags by `shared.containers` (uid 10001, read-only root, the CPU/memory limits, `/cache` and `/tmp`
its only writable paths, the host network). It pulls the model from the MLflow server the step
uses, so the tracking URI must be a server (`run_local --mlflow-server`), not a SQLite file. The
model cache (`/cache`) is a folder of the state dir that outlives containers, as a pod's node cache.

Rollout: the new model first runs as a candidate on a free port and must pass `/ready` and a smoke
prediction (a model that fails leaves the running container serving); then the running container
is stopped and the new one starts on the serving port from the cache. Connections are refused for
that restart (seconds: docs/benchmarks.md, the serving container's cold start): the local target
(Gunicorn's SIGHUP) is the one without a gap.
"""

from __future__ import annotations

import logging
import subprocess
import uuid
from pathlib import Path

from pydantic import BaseModel

from shared.containers import EngineMissing, declared_env, engine_command, grant_fs_group, run_argv
from shared.errors import StepError
from shared.pod_shape import RUN_AS_USER
from shared.processes import free_port, port_is_free
from shared.progress import NO_PROGRESS, Progress
from shared.settings import Settings
from steps.deploy.contract import DeployInput, DeployResult, Target
from steps.deploy.k8s_deploy import platform_env, resolve_model_version
from steps.deploy.k8s_render import K8sSpec, render_deployment
from steps.deploy.probe import smoke_predict, wait_ready
from steps.deploy.state import read_json_model, utc_now, write_json_model

log = logging.getLogger(__name__)

STATE_FILE = "container.json"
CACHE_DIR = "container-cache"


class ContainerState(BaseModel):
    name: str
    image: str
    url: str
    port: int
    model_uri: str
    model_version: str
    started_at: str


def rollout_container(
    inp: DeployInput, settings: Settings, state_dir: Path, progress: Progress = NO_PROGRESS
) -> DeployResult:
    """Start the serving container, or replace the running one once the new model passed its gate."""
    if not inp.image:
        raise StepError("the container target needs --image (the serving image, with its tag)")
    tracking_uri = settings.mlflow_tracking_uri or ""
    if not tracking_uri.startswith(("http://", "https://")):
        raise StepError(
            f"the container target pulls the model from an MLflow server; the tracking URI is "
            f"{tracking_uri or 'unset'!r} (run_local --mlflow-server serves the local store)"
        )
    try:
        engine_command()
    except EngineMissing as exc:
        raise StepError(f"the container target needs a container engine: {exc}") from None
    state_dir = Path(state_dir).resolve()
    cache = state_dir / CACHE_DIR
    cache.mkdir(parents=True, exist_ok=True)
    if not grant_fs_group([cache], RUN_AS_USER):  # as the pod's fsGroup makes its emptyDir writable
        cache.chmod(0o777)
    model_uri, version = resolve_model_version(inp.model_uri, tracking_uri)
    running = _running(state_dir)
    if running is not None and running.port != inp.serving_port:
        raise StepError(
            f"a serving container already answers at {running.url}; roll out to the same --serving-port "
            "or stop it first (python -m steps.deploy stop)"
        )
    if running is None and not port_is_free(inp.host, inp.serving_port):
        raise StepError(
            f"port {inp.serving_port} is already in use by another program; choose --serving-port"
        )

    def argv(name: str, port: int) -> list[str]:
        return _run_argv(inp, settings, model_uri, version, cache, name, port)

    candidate = f"emotion-serving-candidate-{uuid.uuid4().hex[:8]}"
    port = free_port()
    progress.status(f"candidate container for {model_uri} on port {port}: waiting for /ready")
    _start(argv(candidate, port))
    try:
        _gate(candidate, f"http://127.0.0.1:{port}", inp.ready_timeout_s)
    finally:
        _remove(candidate)
    progress.advance()
    if running is not None:
        progress.status(f"switching {running.url}: version {running.model_version} -> {version}")
        _remove(running.name, stop_timeout_s=inp.graceful_timeout_s)
        (state_dir / STATE_FILE).unlink(missing_ok=True)
    name = f"emotion-serving-{uuid.uuid4().hex[:8]}"
    url = f"http://{inp.host}:{inp.serving_port}"
    _start(argv(name, inp.serving_port))
    try:
        served = _gate(name, url, inp.ready_timeout_s)
    except StepError:
        _remove(name)
        raise
    progress.advance()
    state = ContainerState(
        name=name,
        image=inp.image,
        url=url,
        port=inp.serving_port,
        model_uri=model_uri,
        model_version=served,
        started_at=utc_now(),
    )
    write_json_model(state_dir / STATE_FILE, state)
    log.info("serving model version %s from container %s at %s", served, name, url)
    return DeployResult(
        deploy_target=Target.container, endpoint_url=url, model_uri=model_uri, served_version=served
    )


def _run_argv(
    inp: DeployInput, settings: Settings, model_uri: str, version: str, cache: Path, name: str, port: int
) -> list[str]:
    spec = K8sSpec(
        name=inp.name, namespace="local", image=str(inp.image), model_uri=model_uri, model_version=version
    )
    pod = render_deployment(spec)["spec"]["template"]["spec"]
    container = pod["containers"][0]
    secrets = {  # what the pod's Secret holds, from the step's settings
        name: value.get_secret_value()
        for name, value in (
            ("AWS_ACCESS_KEY_ID", settings.aws_access_key_id),
            ("AWS_SECRET_ACCESS_KEY", settings.aws_secret_access_key),
        )
        if value is not None
    }
    env = {
        **declared_env(container, secrets),
        **platform_env(settings),
        **inp.serve_env,
        "SERVE_HOST": inp.host,
        "SERVE_PORT": str(port),
    }
    return run_argv(
        container,
        image=str(inp.image),
        sources={"/cache": cache, "/tmp": None},
        env=env,
        pod_security=pod["securityContext"],
        name=name,
        detach=True,
    )


def _start(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise StepError(f"the serving container did not start: {done.stderr.strip()[-1000:]}")


def _alive(name: str) -> bool:
    done = subprocess.run(
        [*engine_command(), "inspect", "--format", "{{.State.Running}}", name], capture_output=True, text=True
    )
    return done.returncode == 0 and done.stdout.strip() == "true"


def _gate(name: str, url: str, timeout_s: float) -> str:
    """The served version once `/ready` and a smoke prediction pass; StepError with the container's log."""
    try:
        wait_ready(url, timeout_s, alive=lambda: _alive(name))
        return smoke_predict(url)
    except StepError as exc:
        raise StepError(f"the serving container failed its health gate: {exc}\n{_logs(name)}") from None


def _logs(name: str, lines: int = 30) -> str:
    done = subprocess.run(
        [*engine_command(), "logs", "--tail", str(lines), name], capture_output=True, text=True
    )
    return (done.stdout + done.stderr).strip()


def _remove(name: str, stop_timeout_s: int = 10) -> None:
    """Stop gracefully (SIGTERM: in-flight requests finish), then remove."""
    subprocess.run([*engine_command(), "stop", "-t", str(stop_timeout_s), name], capture_output=True)
    subprocess.run([*engine_command(), "rm", "-f", name], capture_output=True)


def _running(state_dir: Path) -> ContainerState | None:
    path = state_dir / STATE_FILE
    state = read_json_model(path, ContainerState) if path.exists() else None
    if state is not None and not _alive(state.name):
        path.unlink(missing_ok=True)
        return None
    return state


def stop_container(state_dir: Path, timeout_s: int = 30) -> dict | None:
    """Stop the serving container this state dir records; None when there is none."""
    state = _running(Path(state_dir).resolve())
    if state is None:
        return None
    _remove(state.name, stop_timeout_s=timeout_s)
    (Path(state_dir).resolve() / STATE_FILE).unlink(missing_ok=True)
    return {"stopped": True, "url": state.url, "container": state.name, "model_version": state.model_version}


def status_container(state_dir: Path) -> dict | None:
    state = _running(Path(state_dir).resolve())
    return None if state is None else {"running": True, "target": "container", **state.model_dump()}
