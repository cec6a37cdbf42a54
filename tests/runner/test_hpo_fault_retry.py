"""The compiled workflow under the local runner: the hpo step is SIGKILLed mid-search and retried.

What a pod eviction or a node loss does on a cluster: the step's process dies without a chance
to clean up, and the template's retry rule (a pod-level error) runs it again, with the same
arguments, in a new process. The retry continues the workflow's search: finished trials are
kept and not rerun, one parent run, no duplicate child runs, no run left RUNNING (slow).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from pipelines.local_runner.services import free_port

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "pipelines" / "emotion-hpo.yaml"
NUM_SAMPLES = 3


def _query(db: Path, sql: str) -> list[tuple]:
    if not db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute(sql).fetchall()
    except sqlite3.Error:  # tables not created yet, or busy
        return []


def _trial_runs(db: Path) -> list[tuple]:
    return _query(
        db,
        "select r.run_uuid, r.status, r.end_time from runs r join tags t on t.run_uuid = r.run_uuid"
        " where t.key = 'hpo_role' and t.value = 'trial'",
    )


def _hpo_step(local: Path) -> psutil.Process | None:
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if "steps.hpo" in cmd and any(str(local) in part for part in cmd):
            return proc
    return None


@pytest.mark.slow
def test_sigkilled_hpo_step_is_retried_by_the_runner_and_continues_its_search(
    tmp_path, tiny_base_model, dataset_dir
):
    local = tmp_path / ".local"
    subprocess.run(
        [sys.executable, "-m", "shared.data_registry", "build", "--source", str(dataset_dir),
         "--registry", str(local / "data-registry")],
        cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip
    port = free_port()
    args = [str(WORKFLOW), "--local-dir", str(local), "--profile", "demo"]
    for key, value in {
        "model": str(tiny_base_model),
        "num-samples": str(NUM_SAMPLES),
        "max-epochs": "2",
        "limit": "120",
        "eval-limit": "60",
        "serving-port": str(port),
    }.items():
        args += ["--param", f"{key}={value}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EMOTION_LOCAL_DIR": str(local)}
    db = local / "mlflow.db"
    log = tmp_path / "runner.log"
    with open(log, "wb") as out:
        runner = subprocess.Popen(
            [sys.executable, "-m", "pipelines.run_local", *args], cwd=ROOT, env=env, stdout=out, stderr=out
        )
    killed_pid = None
    try:
        deadline = time.monotonic() + 1500
        while time.monotonic() < deadline and runner.poll() is None:
            if any(status in ("FINISHED", "KILLED") for _, status, _ in _trial_runs(db)):
                time.sleep(3)  # Tune saves its experiment state every 2 s
                step = _hpo_step(local)
                if step is not None:
                    killed_pid = step.pid
                    step.send_signal(signal.SIGKILL)  # no cleanup: as when the node dies
                break
            time.sleep(1)
        assert killed_pid is not None, "the hpo step was not caught mid-search:\n" + log.read_text()[-3000:]
        done_before = {
            run_id: end for run_id, status, end in _trial_runs(db) if status in ("FINISHED", "KILLED")
        }
        epochs_before = {
            run_id: _query(
                db, f"select count(*) from metrics where run_uuid = '{run_id}' and key = 'val_loss'"
            )[0][0]
            for run_id in done_before
        }
        runner.wait(timeout=2400)
        assert runner.returncode == 0, log.read_text()[-5000:]

        run_dir = next((local / "runs").iterdir())
        state = json.loads((run_dir / "state.json").read_text())
        assert state["tasks"]["hpo"]["phase"] == "succeeded"
        assert state["tasks"]["hpo"]["attempts"] == 2, "retried once by the template's retry rule"
        uid = state["workflow_uid"]

        parents = _query(
            db,
            "select r.run_uuid, r.status from runs r join tags t on t.run_uuid = r.run_uuid"
            " where t.key = 'hpo_role' and t.value = 'parent'",
        )
        assert len(parents) == 1 and parents[0][1] == "FINISHED", parents
        tagged = _query(
            db, f"select value from tags where run_uuid = '{parents[0][0]}' and key = 'argo_workflow_uid'"
        )
        assert tagged == [(uid,)]
        trials = _trial_runs(db)
        trial_ids = _query(db, "select value from tags where key = 'trial_id'")
        assert len(trials) == NUM_SAMPLES and len(set(trial_ids)) == NUM_SAMPLES, "no duplicate child runs"
        after = {run_id: end for run_id, _, end in trials}
        for run_id, end in done_before.items():  # finished trials were kept, not rerun
            assert after[run_id] == end
            count = _query(
                db, f"select count(*) from metrics where run_uuid = '{run_id}' and key = 'val_loss'"
            )
            assert count[0][0] == epochs_before[run_id]
        assert _query(db, "select run_uuid from runs where status = 'RUNNING'") == []
        assert (local / "hpo" / uid).is_dir(), "the search lives under <storage>/<workflow uid>"
    finally:
        if runner.poll() is None:
            runner.send_signal(signal.SIGINT)
            try:
                runner.wait(timeout=60)
            except subprocess.TimeoutExpired:
                runner.kill()
        subprocess.run(
            [sys.executable, "-m", "steps.deploy", "stop"],
            cwd=ROOT,
            capture_output=True,
            env=env,
            timeout=120,
        )
