"""Local target: the real serving app under Gunicorn, rolled over under load, a broken model refused.

Model versions 1 and 2 (copies of tiny_model_dir) and 3 (corrupted weights) are registered in a
throwaway SQLite MLflow registry, so `/predict` reports "1", "2", as it would in production.
The deploy step runs as a subprocess (as in the pipeline), so the server must outlive it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from serving.gated_app import HealthGatedApp
from shared.processes import free_port, port_is_free
from steps.deploy import procs
from steps.deploy.core import SERVING_DIR
from steps.deploy.local import CANDIDATE_LOG_FILE, status_local, stop_local
from steps.deploy.state import ServingState, load_state, save_state
from tests.deploy.helpers import MODEL, ROOT, LoadGenerator


@pytest.fixture
def deploy_env(registry: str, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "EMOTION_LOCAL_DIR": str(tmp_path / "local"),
        "MLFLOW_TRACKING_URI": registry,
        "SERVE_CACHE_DIR": str(tmp_path / "cache"),
        "SERVE_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
    }


def _deploy(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "steps.deploy", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture
def server_v1(deploy_env: dict[str, str], tmp_path: Path):
    """Version 1 serving on a free port; stopped (and checked stopped) afterwards."""
    port = free_port()
    result_dir = tmp_path / "result-v1"
    run = _deploy(
        deploy_env,
        "rollout",
        "--model-uri",
        f"models:/{MODEL}/1",
        "--serving-port",
        str(port),
        "--result-dir",
        str(result_dir),
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert (result_dir / "served-version").read_text() == "1"
    url = (result_dir / "endpoint-url").read_text()
    yield url, port
    stopped = _deploy(deploy_env, "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert port_is_free("127.0.0.1", port)


def _predict_version(url: str) -> str:
    response = httpx.post(f"{url}/predict", json={"texts": ["i am so happy"]}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["model_version"]


@pytest.mark.slow
def test_rollout_under_load_drops_no_request_and_switches_version(server_v1, deploy_env, tmp_path):
    url, port = server_v1
    state_before = json.loads(_deploy(deploy_env, "status").stdout)
    assert state_before["running"] and state_before["ready"] and state_before["model_version"] == "1"
    with LoadGenerator(url) as load:
        while len(load.results) < 20:
            time.sleep(0.1)
        run = _deploy(
            deploy_env,
            "rollout",
            "--model-uri",
            f"models:/{MODEL}/2",
            "--serving-port",
            str(port),
            "--result-dir",
            str(tmp_path / "result-v2"),
        )
        finished = time.monotonic()
        while sum(t > finished for t, _, _ in load.results) < 20:
            time.sleep(0.1)
    assert run.returncode == 0, run.stderr[-3000:]
    failures = [r for r in load.results if not r[1]]
    assert failures == [], failures[:5]
    versions = [v for _, _, v in load.results]
    assert "1" in versions and "2" in versions
    assert all(
        v == "2" for t, _, v in load.results if t > finished
    )  # old workers drained before the step ended
    assert (tmp_path / "result-v2" / "served-version").read_text() == "2"
    status = json.loads(_deploy(deploy_env, "status").stdout)
    assert status["model_version"] == "2" and status["previous_model_version"] == "1"
    assert status["master_pid"] == state_before["master_pid"]  # same master, same socket
    assert set(status["worker_pids"]).isdisjoint(state_before["worker_pids"])  # new workers


@pytest.mark.slow
def test_broken_model_is_refused_and_the_old_version_keeps_serving(server_v1, deploy_env):
    url, port = server_v1
    # The candidate's failing workers abort instead of exiting with Gunicorn's boot error, so its
    # master boots new ones until the gate times out: a short timeout, and its log names the cause.
    run = _deploy(
        deploy_env,
        "rollout",
        "--model-uri",
        f"models:/{MODEL}/3",
        "--serving-port",
        str(port),
        "--ready-timeout-s",
        "30",
    )
    assert run.returncode == 2
    assert "rollout aborted" in run.stderr and "keeps serving" in run.stderr
    candidate_log = Path(deploy_env["EMOTION_LOCAL_DIR"]) / SERVING_DIR / CANDIDATE_LOG_FILE
    assert "model failed to load: SafetensorError" in candidate_log.read_text()
    assert _predict_version(url) == "1"
    status = json.loads(_deploy(deploy_env, "status").stdout)
    assert status["ready"] and status["model_version"] == "1"


# ---- fast tests -------------------------------------------------------------------------------


def test_stop_and_status_without_a_server(tmp_path):
    assert stop_local(tmp_path) == {"stopped": False, "reason": "no local server is running"}
    assert status_local(tmp_path)["running"] is False


def test_a_stale_state_file_is_not_trusted(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    save_state(
        tmp_path,
        ServingState(
            model_uri="m",
            model_version="1",
            url="http://127.0.0.1:1",
            host="127.0.0.1",
            port=1,
            master_pid=dead.pid,
            log_file="x",
            server_config=str(tmp_path / "server.json"),
            started_at="t",
            updated_at="t",
        ),
    )
    assert status_local(tmp_path)["running"] is False
    assert load_state(tmp_path) is None


def test_the_port_must_be_free_for_a_fresh_start(tmp_path):
    from shared.errors import StepError
    from steps.deploy.contract import DeployInput
    from steps.deploy.local import rollout_local

    with procs.listening_socket() as busy:
        port = busy.getsockname()[1]
        with pytest.raises(StepError, match=f"port {port} .* already in use"):
            rollout_local(DeployInput(model_uri="/nowhere", serving_port=port), tmp_path, ROOT)


async def _lifespan_messages(app) -> list[dict]:
    """Drive an ASGI app's lifespan startup the way Uvicorn does; return what it sent back."""
    import asyncio

    sent: list[dict] = []
    inbox: asyncio.Queue = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})

    async def send(message):
        sent.append(message)
        if message["type"].startswith("lifespan.startup."):
            await inbox.put({"type": "lifespan.shutdown"})

    await asyncio.wait_for(app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, send), 10)
    return sent


def _toy_app(ready_status: str):
    """A minimal app with the serving contract's /ready and /predict, for the gate's unit tests."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    app = FastAPI()

    @app.get("/ready")
    async def ready():
        code = 200 if ready_status == "ready" else 503
        return JSONResponse({"status": ready_status, "reason": "bad weights"}, status_code=code)

    @app.post("/predict")
    async def predict():
        return {"predictions": [{"emotion": "joy", "confidence": 0.9}], "model_version": "7"}

    return app


def test_gate_completes_startup_only_when_the_model_answers():
    import asyncio

    sent = asyncio.run(_lifespan_messages(HealthGatedApp(_toy_app("ready"), timeout_s=5)))
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


def test_gate_fails_startup_when_the_model_failed():
    import asyncio

    sent = asyncio.run(_lifespan_messages(HealthGatedApp(_toy_app("failed"), timeout_s=5)))
    assert sent[0]["type"] == "lifespan.startup.failed"
    assert "bad weights" in sent[0]["message"]


@pytest.mark.slow
def test_kubernetes_target_pins_an_alias_to_its_registry_version(registry):
    from mlflow import MlflowClient

    from shared.errors import StepError
    from steps.deploy.k8s_deploy import resolve_model_version

    MlflowClient(tracking_uri=registry, registry_uri=registry).set_registered_model_alias(
        MODEL, "champion", 2
    )
    assert resolve_model_version(f"models:/{MODEL}@champion", registry) == (f"models:/{MODEL}/2", "2")
    with pytest.raises(StepError, match="cannot resolve"):
        resolve_model_version(f"models:/{MODEL}@nobody", registry)


@pytest.mark.slow
def test_workflow_deploy_rolls_out_its_register_steps_version_while_another_is_champion(
    registry, deploy_env, tmp_path
):
    """The compiled deploy template, fed register's `model-uri` output (version 1) while the
    `champion` alias points at version 2 (moved by another workflow): version 1 is served."""
    import re

    from mlflow import MlflowClient

    from pipelines import parameters
    from pipelines.emotion_hpo import build_workflow, to_manifest

    MlflowClient(tracking_uri=registry, registry_uri=registry).set_registered_model_alias(
        MODEL, "champion", "2"
    )
    spec = to_manifest(build_workflow())["spec"]
    deploy = next(t for t in spec["templates"] if t["name"] == "deploy")
    dag = next(t for t in spec["templates"] if "dag" in t)["dag"]["tasks"]
    fed = next(t for t in dag if t["name"] == "deploy")["arguments"]["parameters"]
    assert fed == [{"name": "model-uri", "value": "{{tasks.register.outputs.parameters.model-uri}}"}]
    port = free_port()
    values = {
        **{f"workflow.parameters.{k}": v for k, v in parameters.defaults().items()},
        "workflow.parameters.deploy-target": "local",
        "workflow.parameters.serving-port": str(port),
        "inputs.parameters.model-uri": f"models:/{MODEL}/1",  # what register wrote to /tmp/result/model-uri
    }
    args = [
        re.sub(r"\{\{([^}]+)\}\}", lambda m: values.get(m.group(1), m.group(0)), a)
        for a in deploy["container"]["args"]
    ]
    result_dir = tmp_path / "result"
    args[args.index("--result-dir") + 1] = str(result_dir)
    try:
        run = _deploy(deploy_env, *args)
        assert run.returncode == 0, run.stderr[-3000:]
        assert (result_dir / "served-version").read_text() == "1"
        assert _predict_version((result_dir / "endpoint-url").read_text()) == "1"
    finally:
        _deploy(deploy_env, "stop")
        MlflowClient(tracking_uri=registry, registry_uri=registry).delete_registered_model_alias(
            MODEL, "champion"
        )


def test_default_server_runs_one_single_threaded_worker_per_core(monkeypatch):
    import steps.deploy.local as local
    from steps.deploy.contract import DeployInput

    def config(cores: int, **fields):
        monkeypatch.setattr(local, "available_cores", lambda: cores)
        inp = DeployInput(model_uri="models:/m/1", **fields)
        return local._server_config(inp, "127.0.0.1:0", "127.0.0.1", 0, Path("log"), None)

    for cores in (1, 2, 8):
        default = config(cores)
        assert (default.workers, default.env["SERVE_THREADS"]) == (cores, "1")
    explicit = config(8, workers=2)  # fewer workers: the cores are split between their threads
    assert (explicit.workers, explicit.env["SERVE_THREADS"]) == (2, "4")
    pinned = config(8, workers=2, serve_env={"SERVE_THREADS": "1"})  # an explicit SERVE_THREADS wins
    assert pinned.env["SERVE_THREADS"] == "1"
