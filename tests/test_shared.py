import json

from pydantic import BaseModel

from shared.results import write_result
from shared.settings import Settings


class _R(BaseModel):
    best_run_id: str
    promoted: bool
    counts: dict[str, int]


def test_settings_read_platform_env_and_hide_secrets(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    monkeypatch.setenv("ARGO_WORKFLOW_UID", "uid-123")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value")
    s = Settings()
    assert s.mlflow_tracking_uri == "http://mlflow:5000"
    assert s.argo_workflow_uid == "uid-123"
    assert s.mlflow_experiment_name == "emotion"
    assert s.docker_image_tag == "DEV"
    assert "s3cr3t-value" not in json.dumps(s.public_dict())
    assert "s3cr3t-value" not in repr(s)
    assert s.secret_values() == ["s3cr3t-value"]


def test_write_result_writes_json_and_one_file_per_field(tmp_path):
    write_result(_R(best_run_id="abc", promoted=True, counts={"a": 1}), tmp_path / "result.json", tmp_path)
    assert json.loads((tmp_path / "result.json").read_text())["best_run_id"] == "abc"
    assert (tmp_path / "best-run-id").read_text() == "abc"
    assert (tmp_path / "promoted").read_text() == "true"
    assert json.loads((tmp_path / "counts").read_text()) == {"a": 1}
