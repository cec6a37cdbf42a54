"""Ctrl-C of the local runner mid-search, then `make resume` (`--resume-last`): the resumed search
runs the same trials, stops them at the same rungs and records the same per-epoch metrics as an
uninterrupted run of the same workflow, and its progress reaches M/M (slow)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.local_runner.progress_view import read_step_progress
from pipelines.local_runner.services import free_port
from steps.hpo.tracking import FINISHED, KILLED
from tests.hpo.driver import ROOT, assert_same_decisions, signal_when
from tests.hpo.test_resume_decisions import _epochs, _record
from tests.local_pipeline import build_registry, stop_server

WORKFLOW = ROOT / "pipelines" / "emotion-hpo.yaml"


def _runner(local: Path, model: Path) -> list[str]:
    params = {
        "model": str(model),
        "num-samples": "4",
        "max-epochs": "2",
        "asha-grace-period": "1",
        "asha-reduction-factor": "2",
        "cpus-per-trial": str(os.cpu_count()),  # the local Ray gets every CPU: one trial at a time
        "seed": "5",
        "limit": "120",
        "eval-limit": "60",
        "mlflow-experiment-name": "resume",
        "serving-port": str(free_port()),
    }
    argv = [sys.executable, "-m", "pipelines.run_local", str(WORKFLOW), "--local-dir", str(local)]
    argv += ["--profile", "demo", "--no-retry", "--no-smoke"]
    for key, value in params.items():
        argv += ["--param", f"{key}={value}"]
    return argv


def _parent_status(local: Path) -> str:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{local / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("resume")
    return client.search_runs([experiment.experiment_id], "tags.hpo_role = 'parent'")[0].info.status


@pytest.mark.slow
def test_ctrl_c_then_resume_last_decides_as_the_uninterrupted_run(tmp_path, tiny_base_model, dataset_dir):
    base, local = tmp_path / "uninterrupted" / ".local", tmp_path / "interrupted" / ".local"
    try:
        build_registry(base, dataset_dir)
        done = subprocess.run(_runner(base, tiny_base_model), cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout[-3000:]
        expected = _record(base)
        total = _epochs(expected)
        assert 2 < total < 4 * 2, "ASHA stopped some trials in the uninterrupted run"

        build_registry(local, dataset_dir)
        argv = _runner(local, tiny_base_model)
        log = tmp_path / "first.log"
        first = signal_when(
            argv, {**os.environ}, lambda: _epochs(_record(local)) >= total // 2, signal.SIGINT, log
        )
        assert first.returncode == 130, log.read_text()[-3000:]
        interrupted = _record(local)
        before = _epochs(interrupted)
        assert 0 < before < total, "interrupted mid-search"
        assert _parent_status(local) == KILLED
        assert FINISHED not in {r["status"] for r in interrupted.values()} or len(interrupted) < 4

        resumed = subprocess.run(argv[:6] + ["--resume-last"], cwd=ROOT, capture_output=True, text=True)
        assert resumed.returncode == 0, resumed.stdout[-3000:]
        got = _record(local)
        assert_same_decisions(got, expected)
        assert _parent_status(local) == FINISHED
        runs = list((local / "runs").iterdir())
        assert len(runs) == 1, "the resume continued the same run (the same workflow uid)"
        progress = read_step_progress(runs[0] / "tasks" / "hpo")
        assert (progress.done, progress.total) == (total, total), progress
    finally:
        stop_server(base)
        stop_server(local)
