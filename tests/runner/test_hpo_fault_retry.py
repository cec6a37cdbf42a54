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
from tests.hpo.driver import SavedAfter

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


def _start_runner(tmp_path, tiny_base_model, dataset_dir):
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
    log = tmp_path / "runner.log"
    with open(log, "ab") as out:
        runner = subprocess.Popen(
            [sys.executable, "-m", "pipelines.run_local", *args], cwd=ROOT, env=env, stdout=out, stderr=out
        )
    return local, env, log, runner


def _wait_mid_search(db: Path, runner: subprocess.Popen, log: Path, storage: Path) -> None:
    """Until a trial has ended and Tune has saved that (what a retry resumes from), while the search runs."""
    deadline = time.monotonic() + 1500
    saved = SavedAfter(lambda: any(s in ("FINISHED", "KILLED") for _, s, _ in _trial_runs(db)), storage)
    while time.monotonic() < deadline and runner.poll() is None:
        if saved():
            return
        time.sleep(1)
    raise AssertionError("the search was not caught mid-way:\n" + log.read_text()[-3000:])


def _val_loss_count(db: Path, run_id: str) -> int:
    return _query(db, f"select count(*) from metrics where run_uuid = '{run_id}' and key = 'val_loss'")[0][0]


def _finished_trials(db: Path) -> dict[str, tuple[int, int]]:
    return {
        run_id: (end, _val_loss_count(db, run_id))
        for run_id, status, end in _trial_runs(db)
        if status in ("FINISHED", "KILLED")
    }


def _assert_one_search_kept(local: Path, db: Path, done_before: dict[str, tuple[int, int]]) -> dict:
    run_dir = next((local / "runs").iterdir())
    state = json.loads((run_dir / "state.json").read_text())
    assert state["tasks"]["hpo"]["phase"] == "succeeded"
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
    assert done_before
    for run_id, (end, epochs) in done_before.items():  # finished trials were kept, not rerun
        assert after[run_id] == end
        assert _val_loss_count(db, run_id) == epochs
    assert _query(db, "select run_uuid from runs where status = 'RUNNING'") == []
    assert (local / "hpo" / uid).is_dir(), "the search lives under <storage>/<workflow uid>"
    return state


def _stop(runner: subprocess.Popen, env: dict[str, str]) -> None:
    if runner.poll() is None:
        runner.send_signal(signal.SIGINT)
        try:
            runner.wait(timeout=60)
        except subprocess.TimeoutExpired:
            runner.kill()
    subprocess.run(
        [sys.executable, "-m", "steps.deploy", "stop"], cwd=ROOT, capture_output=True, env=env, timeout=120
    )


@pytest.mark.slow
def test_sigkilled_hpo_step_is_retried_by_the_runner_and_continues_its_search(
    tmp_path, tiny_base_model, dataset_dir
):
    local, env, log, runner = _start_runner(tmp_path, tiny_base_model, dataset_dir)
    db = local / "mlflow.db"
    try:
        _wait_mid_search(db, runner, log, local / "hpo")
        step = _hpo_step(local)
        assert step is not None, "no hpo step process"
        done_before = _finished_trials(db)  # ended before the kill (ASHA-stopped or complete)
        step.send_signal(signal.SIGKILL)  # no cleanup: as when the node dies
        runner.wait(timeout=2400)
        assert runner.returncode == 0, log.read_text()[-5000:]
        state = _assert_one_search_kept(local, db, done_before)
        assert state["tasks"]["hpo"]["attempts"] == 2, "retried once by the template's retry rule"
    finally:
        _stop(runner, env)


@pytest.mark.slow
def test_ctrl_c_during_the_search_then_resume_keeps_every_finished_epoch(
    tmp_path, tiny_base_model, dataset_dir
):
    """`make demo`, Ctrl-C during the search, `make resume` (the README's promise)."""
    local, env, log, runner = _start_runner(tmp_path, tiny_base_model, dataset_dir)
    db = local / "mlflow.db"
    try:
        _wait_mid_search(db, runner, log, local / "hpo")
        done_before = _finished_trials(db)  # ended before Ctrl-C; the interrupted ones become KILLED
        runner.send_signal(signal.SIGINT)  # Ctrl-C
        runner.wait(timeout=120)
        assert runner.returncode != 0
        # stopped: nothing is left RUNNING; the parent run says KILLED
        assert _query(db, "select run_uuid from runs where status = 'RUNNING'") == []
        parents = _query(
            db,
            "select r.status from runs r join tags t on t.run_uuid = r.run_uuid"
            " where t.key = 'hpo_role' and t.value = 'parent'",
        )
        assert parents == [("KILLED",)], log.read_text()[-3000:]
        with open(log, "ab") as out:
            resumed = subprocess.run(
                [sys.executable, "-m", "pipelines.run_local", str(WORKFLOW),
                 "--local-dir", str(local), "--resume-last"],
                cwd=ROOT, env=env, stdout=out, stderr=out, timeout=2400,
            )  # fmt: skip
        assert resumed.returncode == 0, log.read_text()[-5000:]
        _assert_one_search_kept(local, db, done_before)
    finally:
        _stop(runner, env)
