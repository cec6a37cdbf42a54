"""Ray Serve target on a real multi-node Ray cluster on this machine (a head and two worker nodes).

The deploy step runs as a subprocess against the head's dashboard (Serve's REST API), as it would
against a remote cluster; the nodes get the platform environment (the tracking URI) the way a
KubeRay pod gets it. Model versions 1, 2 (good) and 3 (corrupted) come from `registry`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from serving.ray_proxy import NODE_ENV
from shared.processes import free_port
from tests.deploy.helpers import MODEL, ROOT, LoadGenerator
from tests.ray_nodes import local_cluster

pytestmark = pytest.mark.slow

TEXTS = ["i am so happy today", "this makes me furious", "i feel a little scared of the dark"]


@dataclass
class ServeCluster:
    dashboard_url: str
    serve_url: str
    serving_port: int
    env: dict[str, str]  # the deploy step's environment
    node_ids: list[str]

    def deploy(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "steps.deploy", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    def rollout(self, version: str, result_dir: Path) -> subprocess.CompletedProcess:
        return self.deploy(
            "rollout", "--deploy-target", "ray-serve", "--model-uri", f"models:/{MODEL}/{version}",
            "--ray-dashboard-url", self.dashboard_url, "--serving-port", str(self.serving_port),
            "--ready-timeout-s", "240", "--result-dir", str(result_dir),
        )  # fmt: skip

    def instance(self) -> dict:
        return httpx.get(f"{self.dashboard_url}/api/serve/applications/", timeout=30).json()

    def replicas(self) -> list[dict]:
        app = self.instance()["applications"]["emotion-classifier"]
        return [r for d in app["deployments"].values() for r in d["replicas"]]


@pytest.fixture(scope="module")
def serve_cluster(registry: str, tmp_path_factory) -> Iterator[ServeCluster]:
    tmp = tmp_path_factory.mktemp("ray-serve")
    node_env = {
        "MLFLOW_TRACKING_URI": registry,
        "SERVE_CACHE_DIR": str(tmp / "cache"),
        "HF_HUB_OFFLINE": "1",
        # every proxy resends a request whose replica died (serving.ray_proxy), as the RayService sets
        **NODE_ENV,
        "PYTHONPATH": str(ROOT),
    }
    cluster, dashboard_url, nodes = local_cluster(node_env, head_cpus=0, worker_cpus=(2, 2))
    cluster.wait_for_nodes()
    port = free_port()
    env = {
        **os.environ,
        **node_env,
        "EMOTION_LOCAL_DIR": str(tmp / "local"),
        # two one-CPU replicas on two two-CPU nodes: room for the upgrade's surge of two more
        "SERVE_REPLICAS": "2",
        "SERVE_THREADS": "1",
    }
    try:
        yield ServeCluster(
            dashboard_url=dashboard_url,
            serve_url=f"http://127.0.0.1:{port}",
            serving_port=port,
            env=env,
            node_ids=[node.node_id for node in nodes],
        )
    finally:
        cluster.shutdown()


def _result(result_dir: Path) -> dict:
    return json.loads((result_dir / "result.json").read_text())


@pytest.fixture(scope="module")
def serving_v1(serve_cluster: ServeCluster, tmp_path_factory) -> ServeCluster:
    result_dir = tmp_path_factory.mktemp("result-v1")
    run = serve_cluster.rollout("1", result_dir)
    assert run.returncode == 0, run.stderr[-4000:]
    result = _result(result_dir)
    assert result["served_version"] == "1" and result["deploy_target"] == "ray-serve"
    assert result["endpoint_url"] == serve_cluster.serve_url
    return serve_cluster


def _gunicorn_answers(env: dict[str, str], tmp_path: Path) -> dict[str, object]:
    """The same texts through the three protocols of the local target (Gunicorn) serving version 1."""
    port = free_port()
    local_env = {**env, "EMOTION_LOCAL_DIR": str(tmp_path / "gunicorn")}
    run = subprocess.run(
        [sys.executable, "-m", "steps.deploy", "rollout", "--model-uri", f"models:/{MODEL}/1",
         "--serving-port", str(port), "--workers", "1", "--result-dir", str(tmp_path / "gunicorn-result")],
        cwd=ROOT, env=local_env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-4000:]
    try:
        return _answers(f"http://127.0.0.1:{port}")
    finally:
        subprocess.run(
            [sys.executable, "-m", "steps.deploy", "stop"], cwd=ROOT, env=local_env, timeout=120, check=True
        )


def _answers(url: str) -> dict[str, object]:
    predict = httpx.post(f"{url}/predict", json={"texts": TEXTS, "all_scores": True}, timeout=30)
    invocations = httpx.post(f"{url}/invocations", json={"inputs": TEXTS}, timeout=30)
    infer = httpx.post(
        f"{url}/v2/models/{MODEL}/infer",
        json={"inputs": [{"name": "text", "shape": [len(TEXTS)], "datatype": "BYTES", "data": TEXTS}]},
        timeout=30,
    )
    for response in (predict, invocations, infer):
        assert response.status_code == 200, response.text
    body = predict.json()
    return {
        "predict": body["predictions"],
        "version": body["model_version"],
        "invocations": invocations.json()["predictions"],
        "v2": {out["name"]: out["data"] for out in infer.json()["outputs"]},
    }


def _close(a: object, b: object, tol: float = 1e-5) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], tol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y, tol) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        return abs(float(a) - float(b)) <= tol
    return a == b


def test_ray_serve_answers_the_three_protocols_as_gunicorn_does(serving_v1: ServeCluster, tmp_path):
    ray_answers = _answers(serving_v1.serve_url)
    assert ray_answers["version"] == "1"
    assert _close(ray_answers, _gunicorn_answers(serving_v1.env, tmp_path))
    info = httpx.get(f"{serving_v1.serve_url}/info", timeout=30).json()
    assert info["model_version"] == "1"
    # the replicas run on both worker nodes, none on the head (it has no CPUs)
    replicas = serving_v1.replicas()
    assert len(replicas) == 2 and {r["node_id"] for r in replicas} == set(serving_v1.node_ids)


def _outcomes(load: LoadGenerator) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _, _, outcome in load.results:
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def test_a_replica_killed_under_load_loses_no_request(serving_v1: ServeCluster):
    before = {r["replica_id"]: r for r in serving_v1.replicas() if r["state"] == "RUNNING"}
    assert len(before) == 2
    victim = next(iter(before.values()))
    # full requests of long texts: each takes long enough that the victim is always running some
    long_text = " ".join(["i could not sleep because i was so worried about tomorrow"] * 12)
    with LoadGenerator(serving_v1.serve_url, texts=[long_text] * 16) as load:
        while len(load.results) < 20:
            time.sleep(0.05)
        os.kill(victim["pid"], signal.SIGKILL)
        killed = time.monotonic()
        deadline = killed + 180
        while time.monotonic() < deadline:  # Serve starts a replacement
            running = {r["replica_id"] for r in serving_v1.replicas() if r["state"] == "RUNNING"}
            if len(running) == 2 and victim["replica_id"] not in running:
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"no replacement replica within 180 s: {serving_v1.replicas()}")
        replaced = time.monotonic()
        while sum(t > replaced for t, _, _ in load.results) < 20:
            time.sleep(0.05)
    failures = [r for r in load.results if not r[1] and not r[2].startswith("HTTP 503: ")]
    assert failures == [], (failures[:5], _outcomes(load))
    assert sum(t > killed for t, ok, _ in load.results if ok) >= 20, _outcomes(load)


def test_upgrade_under_load_drops_no_request_and_a_broken_model_keeps_the_old_one(
    serving_v1: ServeCluster, tmp_path
):
    with LoadGenerator(serving_v1.serve_url) as load:
        while len(load.results) < 20:
            time.sleep(0.05)
        run = serving_v1.rollout("2", tmp_path / "result-v2")
        finished = time.monotonic()
        while sum(t > finished for t, _, _ in load.results) < 20:
            time.sleep(0.05)
    assert run.returncode == 0, run.stderr[-4000:]
    assert _result(tmp_path / "result-v2")["served_version"] == "2"
    # every request answered: 200, or 503 + Retry-After while the surge shares the two cores
    failures = [r for r in load.results if not r[1] and not r[2].startswith("HTTP 503: ")]
    assert failures == [], (failures[:5], _outcomes(load))
    assert sum(not ok for _, ok, _ in load.results) <= len(load.results) // 20, _outcomes(load)
    versions = [v for _, _, v in load.results]
    assert "1" in versions and "2" in versions
    assert all(v == "2" for t, _, v in load.results if t > finished)

    broken = serving_v1.rollout("3", tmp_path / "result-v3")
    assert broken.returncode == 2, broken.stderr[-4000:]
    assert "keeps serving" in broken.stderr
    for _ in range(5):  # whichever replica answers, it is version 2
        response = httpx.post(f"{serving_v1.serve_url}/predict", json={"texts": TEXTS}, timeout=30)
        assert response.status_code == 200 and response.json()["model_version"] == "2"
    app = serving_v1.instance()["applications"]["emotion-classifier"]
    assert app["status"] == "RUNNING" and app["deployed_app_config"]["args"]["model_uri"].endswith("/2")
