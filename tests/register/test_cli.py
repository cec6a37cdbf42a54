"""The CLI's contract without a server: flag validation and an unreachable tracking server."""

import pytest
from typer.testing import CliRunner

from steps.register.cli import app
from steps.register.core import RegisterInput
from tests.mlflow_server import free_port


def test_exactly_one_parent_reference_is_required(tmp_path):
    with pytest.raises(ValueError, match="exactly one of parent_run_id or workflow_uid"):
        RegisterInput(dataset_dir=tmp_path)
    with pytest.raises(ValueError, match="exactly one"):
        RegisterInput(dataset_dir=tmp_path, parent_run_id="a", workflow_uid="b")
    assert RegisterInput(dataset_dir=tmp_path, workflow_uid="b").model_name == "emotion-classifier"


def test_bad_flags_exit_2_naming_the_flag(tmp_path):
    result = CliRunner().invoke(
        app, ["--parent-run-id", "abc", "--dataset-dir", str(tmp_path), "--metric", "loss"]
    )
    assert result.exit_code == 2
    assert "--metric" in result.output and "accuracy" in result.output
    result = CliRunner().invoke(app, ["--dataset-dir", str(tmp_path), "--tolerance", "-1"])
    assert result.exit_code == 2 and "--tolerance" in result.output


def test_unreachable_tracking_server_is_a_clear_error(tmp_path, monkeypatch):
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    result = CliRunner().invoke(
        app, ["--parent-run-id", "abc", "--dataset-dir", str(tmp_path), "--result-dir", str(tmp_path / "r")]
    )
    assert result.exit_code == 2
    assert f"MLflow tracking server {url} is unreachable" in result.output
    assert not (tmp_path / "r" / "result.json").exists()


def test_module_entry_point_lists_the_contract_flags():
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "steps.register", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    for flag in (
        "--parent-run-id",
        "--workflow-uid",
        "--dataset-dir",
        "--model-name",
        "--tolerance",
        "--result-dir",
    ):
        assert flag in out
