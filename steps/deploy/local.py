"""Local target: the serving app under Gunicorn + Uvicorn workers on this machine, rolled over by SIGHUP.

Why Gunicorn: it is the well-kept process manager that already does what a zero-downtime model
switch needs. Its master owns the listening socket, so a reload never refuses a connection; on
SIGHUP it re-reads its config (the model URI comes from `server.json`), starts new workers and
stops the old ones gracefully (in-flight requests finish). A Uvicorn worker starts accepting
only after the app's lifespan startup, i.e. once the model is loaded.

What Gunicorn does not do is judge a model: a worker that fails to boot takes the whole master
down. So a new model first runs as a *candidate* (the same Gunicorn config and app, on a
temporary port) and must pass `/ready` and a smoke prediction; only then is the running master
told to switch. A failed gate aborts the rollout and the old model keeps serving.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from pathlib import Path

from serving.gated_app import GATE_TIMEOUT_ENV
from shared.errors import StepError
from shared.processes import port_is_free
from shared.progress import NO_PROGRESS, Progress
from steps.deploy import procs
from steps.deploy.contract import DeployInput, DeployResult, Target
from steps.deploy.probe import smoke_predict, wait_ready
from steps.deploy.state import (
    PID_FILE,
    SERVER_CONFIG_FILE,
    SERVER_LOG_FILE,
    ServerConfig,
    ServingState,
    clear_state,
    load_state,
    read_json_model,
    save_state,
    utc_now,
    write_json_model,
)

log = logging.getLogger(__name__)

CANDIDATE_CONFIG_FILE = "candidate.json"
CANDIDATE_LOG_FILE = "candidate.log"


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity), i.e. the ones given to the server."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def worker_count(requested: int, cores: int | None = None) -> int:
    """Gunicorn workers: as requested, or one per core (0). One single-threaded inference per core
    beats fewer workers with more intra-op threads on small batches (docs/benchmarks.md)."""
    return requested or (cores or available_cores())


def serve_threads(workers: int, cores: int | None = None) -> int:
    """Inference threads per worker so that the workers together use every core given to the server."""
    cores = cores or available_cores()
    return max(1, cores // max(1, worker_count(workers, cores)))


def _server_env(inp: DeployInput, host: str, port: int) -> dict[str, str]:
    return {
        "SERVE_THREADS": str(serve_threads(inp.workers)),  # an explicit SERVE_THREADS wins
        **inp.serve_env,
        "SERVE_MODEL_URI": inp.model_uri,
        "SERVE_HOST": host,
        "SERVE_PORT": str(port),
        GATE_TIMEOUT_ENV: f"{inp.ready_timeout_s:g}",
    }


def _server_config(inp: DeployInput, bind: str, host: str, port: int, log_file: Path, pid_file: Path | None):
    return ServerConfig(
        bind=bind,
        workers=worker_count(inp.workers),
        graceful_timeout=inp.graceful_timeout_s,
        worker_timeout=int(inp.ready_timeout_s) + 60,  # a worker's first heartbeat comes after its gate
        log_file=str(log_file),
        pid_file=str(pid_file) if pid_file else None,
        env=_server_env(inp, host, port),
    )


def _running_state(state_dir: Path) -> ServingState | None:
    """The recorded deployment if its master still runs; a stale record is removed."""
    state = load_state(state_dir)
    if state is None:
        return None
    if procs.is_our_master(state.master_pid, Path(state.server_config)):
        return state
    log.warning("state file names master pid %s, which no longer runs: starting afresh", state.master_pid)
    clear_state(state_dir)
    return None


def rollout_local(
    inp: DeployInput, state_dir: Path, cwd: Path, progress: Progress = NO_PROGRESS
) -> DeployResult:
    """Start the server, or roll the running one over to `inp.model_uri` behind the health gate."""
    state_dir = Path(state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    state = _running_state(state_dir)
    if state is None:
        state = _start(inp, state_dir, cwd, progress)
    else:
        if (state.host, state.port) != (inp.host, inp.serving_port):
            raise StepError(
                f"a server already runs at {state.url}; roll out to the same --host/--port "
                f"or stop it first (python -m steps.deploy stop)"
            )
        state = _roll_over(inp, state, state_dir, cwd, progress)
    return DeployResult(
        deploy_target=Target.local,
        endpoint_url=state.url,
        model_uri=state.model_uri,
        served_version=state.model_version,
    )


def _start(inp: DeployInput, state_dir: Path, cwd: Path, progress: Progress = NO_PROGRESS) -> ServingState:
    if not port_is_free(inp.host, inp.serving_port):
        raise StepError(
            f"port {inp.serving_port} on {inp.host} is already in use by another program; "
            "choose --serving-port"
        )
    url = f"http://{inp.host}:{inp.serving_port}"
    log_file = state_dir / SERVER_LOG_FILE
    config_path = state_dir / SERVER_CONFIG_FILE
    bind = f"{inp.host}:{inp.serving_port}"
    config = _server_config(inp, bind, inp.host, inp.serving_port, log_file, state_dir / PID_FILE)
    write_json_model(config_path, config)
    proc = procs.spawn_gunicorn(config_path, log_file, cwd)
    log.info("started Gunicorn master pid %s for %s at %s", proc.pid, inp.model_uri, url)
    progress.advance()
    progress.status(f"server started at {url}; waiting for /ready and a smoke prediction")
    try:
        wait_ready(url, inp.ready_timeout_s, alive=lambda: proc.poll() is None)
        version = smoke_predict(url)
    except StepError as exc:
        procs.terminate(proc.pid, inp.graceful_timeout_s)
        proc.poll()
        raise StepError(
            f"the server for {inp.model_uri} failed its health gate and was stopped: {exc}\n"
            f"last lines of {log_file}:\n{procs.log_tail(log_file)}"
        ) from None
    progress.advance()
    now = utc_now()
    state = ServingState(
        model_uri=inp.model_uri,
        model_version=version,
        url=url,
        host=inp.host,
        port=inp.serving_port,
        master_pid=proc.pid,
        worker_pids=procs.worker_pids(proc.pid),
        log_file=str(log_file),
        server_config=str(config_path),
        started_at=now,
        updated_at=now,
    )
    save_state(state_dir, state)
    log.info("serving model version %s at %s", version, url)
    return state


def gate_candidate(inp: DeployInput, state_dir: Path, cwd: Path, graceful_timeout_s: int) -> str:
    """Run the new model on a temporary port; return its version once `/ready` and a smoke prediction pass."""
    sock = procs.listening_socket("127.0.0.1")
    port = sock.getsockname()[1]
    log_file = state_dir / CANDIDATE_LOG_FILE
    log_file.unlink(missing_ok=True)
    config_path = state_dir / CANDIDATE_CONFIG_FILE
    config = _server_config(inp, f"fd://{sock.fileno()}", "127.0.0.1", port, log_file, None)
    config.workers = 1
    write_json_model(config_path, config)
    url = f"http://127.0.0.1:{port}"
    proc: subprocess.Popen | None = None
    try:
        proc = procs.spawn_gunicorn(config_path, log_file, cwd, pass_fds=[sock.fileno()])
        sock.close()  # the candidate holds its own copy
        wait_ready(url, inp.ready_timeout_s, alive=lambda: proc.poll() is None)
        return smoke_predict(url)
    except StepError as exc:
        raise StepError(f"{exc}\nlast lines of {log_file}:\n{procs.log_tail(log_file)}") from None
    finally:
        sock.close()
        if proc is not None:
            procs.terminate(proc.pid, graceful_timeout_s)
            proc.poll()
        config_path.unlink(missing_ok=True)


def _roll_over(
    inp: DeployInput, state: ServingState, state_dir: Path, cwd: Path, progress: Progress = NO_PROGRESS
) -> ServingState:
    log.info("gating %s on a candidate instance before it takes traffic", inp.model_uri)
    progress.status(f"gating {inp.model_uri} on a candidate instance (/ready + smoke prediction)")
    try:
        new_version = gate_candidate(inp, state_dir, cwd, inp.graceful_timeout_s)
    except StepError as exc:
        raise StepError(
            f"rollout aborted: {inp.model_uri} failed the health gate; model version "
            f"{state.model_version} ({state.model_uri}) keeps serving at {state.url}. Reason: {exc}"
        ) from None
    config_path = Path(state.server_config)
    old_config = read_json_model(config_path, ServerConfig)
    new_config = _server_config(
        inp, old_config.bind, state.host, state.port, Path(old_config.log_file), old_config.pid_file
    )
    old_workers = procs.worker_pids(state.master_pid)
    write_json_model(config_path, new_config)
    log.info("candidate passed (version %s); switching master %s by SIGHUP", new_version, state.master_pid)
    os.kill(state.master_pid, signal.SIGHUP)
    progress.advance()
    progress.status(f"candidate passed; switching {state.url} to version {new_version}")
    try:
        _confirm_switch(state, old_workers, new_version, inp)
    except StepError as exc:
        write_json_model(config_path, old_config)
        if procs.is_our_master(state.master_pid, config_path):
            os.kill(state.master_pid, signal.SIGHUP)
            outcome = f"switched back to {state.model_uri}"
        else:
            outcome = "the server is down; run the rollout again"
        raise StepError(f"rollout of {inp.model_uri} failed after the gate ({exc}); {outcome}") from None
    progress.advance()
    updated = state.model_copy(
        update={
            "model_uri": inp.model_uri,
            "model_version": new_version,
            "worker_pids": procs.worker_pids(state.master_pid),
            "updated_at": utc_now(),
            "previous_model_uri": state.model_uri,
            "previous_model_version": state.model_version,
        }
    )
    save_state(state_dir, updated)
    log.info("serving model version %s at %s (was %s)", new_version, state.url, state.model_version)
    return updated


def _confirm_switch(state: ServingState, old_workers: list[int], new_version: str, inp: DeployInput) -> None:
    """The old workers have drained and exited, and the service answers with the new version."""
    if not procs.wait_gone(old_workers, inp.graceful_timeout_s + 15):
        raise StepError(f"old workers {old_workers} did not exit within {inp.graceful_timeout_s + 15}s")
    config_path = Path(state.server_config)
    wait_ready(
        state.url, inp.ready_timeout_s, alive=lambda: procs.is_our_master(state.master_pid, config_path)
    )
    served = smoke_predict(state.url)
    if served != new_version:
        raise StepError(f"the service answers with model version {served}, expected {new_version}")


def stop_local(state_dir: Path, timeout_s: float = 45.0) -> dict:
    """Stop the server gracefully (in-flight requests finish) and remove its state file."""
    state_dir = Path(state_dir).resolve()
    state = _running_state(state_dir)
    if state is None:
        return {"stopped": False, "reason": "no local server is running"}
    procs.terminate(state.master_pid, timeout_s)
    clear_state(state_dir)
    return {
        "stopped": True,
        "url": state.url,
        "master_pid": state.master_pid,
        "model_version": state.model_version,
    }


def status_local(state_dir: Path) -> dict:
    """The recorded deployment plus what is live now."""
    state_dir = Path(state_dir).resolve()
    state = _running_state(state_dir)
    if state is None:
        return {"running": False, "state_dir": str(state_dir)}
    ready = True
    try:
        wait_ready(state.url, timeout_s=2.0)
    except StepError:
        ready = False
    return {
        "running": True,
        "ready": ready,
        **state.model_dump(mode="json"),
        "worker_pids": procs.worker_pids(state.master_pid),
    }
