"""The real compiled workflow (pipelines/emotion-hpo.yaml) end to end on tiny settings (slow)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipelines.local_runner.services import free_port
from pipelines.run_local import app
from tests.local_pipeline import stop_server

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "pipelines" / "emotion-hpo.yaml"


@pytest.mark.slow
def test_emotion_hpo_runs_locally_end_to_end(tmp_path, tiny_base_model, dataset_dir):
    local = tmp_path / ".local"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "shared.data_registry",
            "build",
            "--source",
            str(dataset_dir),
            "--registry",
            str(local / "data-registry"),
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    port = free_port()
    args = [str(WORKFLOW), "--local-dir", str(local), "--profile", "demo", "--no-retry"]
    for key, value in {
        "model": str(tiny_base_model),
        "num-samples": "2",
        "max-epochs": "1",
        "limit": "120",
        "eval-limit": "60",
        "serving-port": str(port),
    }.items():
        args += ["--param", f"{key}={value}"]
    try:
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        run_dir = next((local / "runs").iterdir())
        state = json.loads((run_dir / "state.json").read_text())
        phases = {name: task["phase"] for name, task in state["tasks"].items()}
        assert phases["hpo"] == phases["register"] == phases["deploy"] == "succeeded"
        assert phases["hpo-rayjob"] == "skipped"  # the resource template is skipped by `when`
        summary = json.loads((run_dir / "summary.json").read_text())
        assert set(summary["best_trial"]["best_config"]) >= {"learning_rate"}
        assert 0.0 <= float(summary["best_trial"]["best_val_accuracy"]) <= 1.0
        assert str(summary["registered_model"]["version"]) == "1"
        assert summary["registered_model"]["promoted"] in (True, "true")
        assert summary["server"]["endpoint_url"] == f"http://127.0.0.1:{port}"
        assert summary["server"]["smoke_test"]["ok"], summary["server"]
        assert "Best trial: val accuracy" in result.output and "Stop the server" in result.output
    finally:
        stop_server(local)
