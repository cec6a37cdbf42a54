"""`python -m steps.hpo reproduce`: one trial trained again from its MLflow child run (slow)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.hpo.test_resume_decisions import ROOT, _env

pytestmark = pytest.mark.slow


def test_reproduce_matches_a_finished_trials_metrics(tokenized_dir, tiny_base_model, tmp_path):
    from mlflow.tracking import MlflowClient

    env = _env(tmp_path)
    search = subprocess.run(
        [sys.executable, "-m", "steps.hpo", "--tokenized-dir", str(tokenized_dir),
         "--model", str(tiny_base_model),
         "--num-samples", "1", "--max-epochs", "2", "--limit", "120", "--cpus-per-trial", "1",
         "--ray-num-cpus", "1", "--torch-threads", "1", "--seed", "11",
         "--storage-dir", str(tmp_path / "hpo"), "--result-dir", str(tmp_path / "search")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert search.returncode == 0, search.stderr[-3000:]
    run_id = (tmp_path / "search" / "best-run-id").read_text()
    recorded = MlflowClient(env["MLFLOW_TRACKING_URI"]).get_metric_history(run_id, "val_loss")

    again = subprocess.run(
        [sys.executable, "-m", "steps.hpo", "reproduce", "--run-id", run_id,
         "--tokenized-dir", str(tokenized_dir), "--result-dir", str(tmp_path / "reproduced")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    result = json.loads((tmp_path / "reproduced" / "result.json").read_text())
    assert result["epochs"] == len(recorded) == 2
    assert result["matches"], result["per_epoch"]
    assert "epoch 2:" in again.stdout

    not_a_trial = subprocess.run(
        [sys.executable, "-m", "steps.hpo", "reproduce", "--run-id", "0" * 32,
         "--tokenized-dir", str(tokenized_dir)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert not_a_trial.returncode == 2 and "--run-id" in not_a_trial.stderr
