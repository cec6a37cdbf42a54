"""Ctrl-C: the runner stops every step's process group, records `interrupted` and exits 130."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.runner.conftest import WORKFLOWS

ROOT = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purposes
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def test_sigint_stops_children_and_marks_run_interrupted(tmp_path, work_dir):
    local_dir = tmp_path / ".local"
    runner = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipelines.run_local",
            str(WORKFLOWS / "sleeper.yaml"),
            "--local-dir",
            str(local_dir),
            "--param",
            f"work-dir={work_dir}",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        pid_files = [work_dir / "step.pid", work_dir / "child.pid"]
        assert _wait_for(lambda: all(p.exists() and p.read_text().strip() for p in pid_files), 60), (
            "step never started"
        )
        step_pid, child_pid = (int(p.read_text()) for p in pid_files)
        assert _alive(step_pid) and _alive(child_pid)
        runner.send_signal(signal.SIGINT)
        output, _ = runner.communicate(timeout=60)
    finally:
        if runner.poll() is None:
            runner.kill()
    assert runner.returncode == 130, output
    assert _wait_for(lambda: not _alive(step_pid) and not _alive(child_pid), 10)  # the whole group is gone
    state = json.loads(next((local_dir / "runs").glob("*/state.json")).read_text())
    assert state["phase"] == "interrupted"
    assert state["tasks"]["sleep"]["phase"] == "interrupted"
    assert state["tasks"]["after"]["phase"] == "pending"
    assert "--resume" in output
