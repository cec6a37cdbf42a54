"""A model that cannot load leaves the server alive, not ready, with the reason in /ready and the log."""

from __future__ import annotations

import logging
import shutil
import time

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from tests.serving.conftest import make_settings


def _failed_ready(client: TestClient) -> dict:
    deadline = time.monotonic() + 30
    while True:
        response = client.get("/ready")
        body = response.json()
        assert response.status_code == 503, body
        if body["status"] == "failed" or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


@pytest.mark.parametrize(
    "breakage, reason_part",
    [
        ("missing_dir", "is not models:/"),
        ("corrupt_weights", "model failed to load"),
        ("no_labels", "labels.json"),
    ],
)
def test_broken_model_is_not_ready_with_reason(breakage, reason_part, tiny_model_dir, tmp_path, caplog):
    model_dir = tmp_path / "model"
    if breakage != "missing_dir":
        shutil.copytree(tiny_model_dir, model_dir)
    if breakage == "corrupt_weights":
        (model_dir / "model.safetensors").write_bytes(b"not a safetensors file")
    if breakage == "no_labels":
        (model_dir / "labels.json").unlink()
    caplog.set_level(logging.ERROR, logger="serving.runtime")
    with TestClient(create_app(make_settings(model_dir, tmp_path), tracking_uri="unused")) as c:
        body = _failed_ready(c)
        assert body["ready"] is False and body["status"] == "failed"
        assert reason_part in body["reason"]
        assert c.get("/health").status_code == 200
        predict = c.post("/predict", json={"texts": ["hello"]})
        assert predict.status_code == 503 and reason_part in predict.json()["detail"]
        assert c.get("/info").status_code == 503
        assert "serving_model_ready 0.0" in c.get("/metrics").text
    assert any(reason_part in r.getMessage() for r in caplog.records)


def test_unreachable_registry_is_not_ready(tmp_path):
    settings = make_settings(tmp_path, tmp_path, model_uri="models:/emotion-classifier@champion")
    app = create_app(settings, tracking_uri=f"sqlite:///{tmp_path}/empty.db")
    with TestClient(app) as c:
        body = _failed_ready(c)
    assert body["status"] == "failed" and "models:/emotion-classifier@champion" in body["reason"]


def test_a_model_without_serving_artifact_where_torch_is_missing_fails_in_one_clear_line(
    tiny_model_dir, tmp_path, caplog, monkeypatch
):
    """The slim serving image has no torch: a model it cannot export says so, no traceback."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a)
    )
    caplog.set_level(logging.ERROR, logger="serving.runtime")
    with TestClient(create_app(make_settings(tiny_model_dir, tmp_path), tracking_uri="unused")) as c:
        body = _failed_ready(c)
        assert body["status"] == "failed"
        assert "no serving artifact" in body["reason"] and "emotion-hpo-train" in body["reason"]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors and all(r.exc_info is None for r in errors)
    assert all("\n" not in r.getMessage() for r in errors)
