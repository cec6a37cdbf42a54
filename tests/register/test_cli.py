"""The CLI's contract without a server: flag validation and an unreachable tracking server."""

import pytest

from shared.errors import EXIT_BAD_INPUT, EXIT_TRANSIENT
from shared.processes import free_port
from steps.register.cli import main
from steps.register.contract import RegisterInput
from tests.cli_helpers import run_main


def test_exactly_one_parent_reference_is_required(tmp_path):
    with pytest.raises(ValueError, match="exactly one of --parent-run-id or --workflow-uid"):
        RegisterInput(dataset_dir=tmp_path)
    with pytest.raises(ValueError, match="exactly one"):
        RegisterInput(dataset_dir=tmp_path, parent_run_id="a", workflow_uid="b")
    assert RegisterInput(dataset_dir=tmp_path, workflow_uid="b").model_name == "emotion-classifier"


def test_bad_flags_exit_2_naming_the_flag(tmp_path, capsys):
    argv = ["--parent-run-id", "abc", "--dataset-dir", str(tmp_path), "--metric", "accuracy"]
    code, out = run_main(main, argv, capsys)
    assert code == EXIT_BAD_INPUT and "unrecognized arguments: --metric" in out  # the gate checks both
    argv = ["--workflow-uid", "u", "--dataset-dir", str(tmp_path)]
    argv += ["--accuracy-tolerance", "-1", "--f1-macro-tolerance", "2", "--eval-limit", "x"]
    code, out = run_main(main, argv, capsys)
    # every problem on one line, each naming its flag
    assert code == EXIT_BAD_INPUT and "--accuracy-tolerance: " in out and "--eval-limit: " in out
    assert "--f1-macro-tolerance: " in out
    code, out = run_main(main, ["--dataset-dir", str(tmp_path), "--tolerance", "0.1"], capsys)
    assert code == EXIT_BAD_INPUT and "unrecognized arguments: --tolerance" in out


def test_unreachable_tracking_server_is_transient(tmp_path, monkeypatch, capsys):
    """A closed port is a service down for now: exit 75, which the workflow retries."""
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    argv = ["--parent-run-id", "abc", "--dataset-dir", str(tmp_path), "--result-dir", str(tmp_path / "r")]
    code, out = run_main(main, argv, capsys)
    assert code == EXIT_TRANSIENT
    assert f"MLflow tracking server {url} is unreachable" in out
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
        "--accuracy-tolerance",
        "--f1-macro-tolerance",
        "--result-dir",
    ):
        assert flag in out
