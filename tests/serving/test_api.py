"""The API contract: endpoints, the /predict shape, scores, truncation and metrics."""

from __future__ import annotations

import math
import time

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.settings import DEFAULT_BACKEND
from tests.conftest import LABELS
from tests.serving.conftest import make_settings, wait_ready

EMOTIONS = set(LABELS.values())


def test_service_info_health_and_docs(client):
    root = client.get("/").json()
    assert root["ready"] is True and root["docs"] == "/docs" and "/predict" in root["endpoints"]
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert {"/", "/health", "/ready", "/info", "/predict", "/metrics"} <= set(spec["paths"])


def test_ready_and_info_describe_the_model(client, tiny_model_dir):
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    info = client.get("/info").json()
    assert info["model_uri"] == str(tiny_model_dir)
    assert info["model_version"] == "local"
    assert info["labels"] == {str(k): v for k, v in LABELS.items()}
    assert (
        info["backend"] == DEFAULT_BACKEND
        and info["lineage"] == {}
        and "run_id" in info
        and "data_version" in info
    )


def test_predict_answers_the_walking_skeleton_shape(client, tiny_model_dir):
    texts = ["I love this!", "This makes me angry"]
    body = client.post("/predict", json={"texts": texts}).json()
    assert body["model_uri"] == str(tiny_model_dir) and body["model_version"] == "local"
    assert [p["text"] for p in body["predictions"]] == texts
    for pred in body["predictions"]:
        assert set(pred) == {"text", "emotion", "confidence"}
        assert pred["emotion"] in EMOTIONS and 0 < pred["confidence"] <= 1


def test_all_scores_sum_to_one_and_top_k_is_the_head_of_them(client):
    text = "i feel like i am being watched"
    full = client.post("/predict", json={"texts": [text], "all_scores": True}).json()["predictions"][0]
    scores = full["scores"]
    assert set(scores) == EMOTIONS and math.isclose(sum(scores.values()), 1.0, abs_tol=1e-4)
    assert list(scores.values()) == sorted(scores.values(), reverse=True)
    assert next(iter(scores)) == full["emotion"] and scores[full["emotion"]] == full["confidence"]
    top2 = client.post("/predict", json={"texts": [text], "top_k": 2}).json()["predictions"][0]["scores"]
    assert list(top2.items()) == list(scores.items())[:2]


def test_truncate_policy_cuts_and_flags(tiny_model_dir, tmp_path):
    settings = make_settings(tiny_model_dir, tmp_path, overlong="truncate", max_text_chars=12)
    with TestClient(create_app(settings, tracking_uri="unused")) as c:
        wait_ready(c.get)
        preds = c.post("/predict", json={"texts": ["a short one", "a much longer text than twelve"]}).json()
    first, second = preds["predictions"]
    assert first["truncated"] is False and first["text"] == "a short one"
    assert second["truncated"] is True and second["text"] == "a much longe"


def test_metrics_count_requests_batches_and_model_version(client):
    client.post("/predict", json={"texts": ["hello there"]})
    client.post("/predict", json={"texts": []})
    text = client.get("/metrics").text
    assert 'serving_requests_total{endpoint="/predict",method="POST",status="200"}' in text
    assert 'serving_requests_total{endpoint="/predict",method="POST",status="422"}' in text
    assert 'serving_request_duration_seconds_bucket{endpoint="/predict"' in text
    assert "serving_batch_size_count" in text
    assert f'serving_model_info{{backend="{DEFAULT_BACKEND}"' in text and 'model_version="local"' in text
    assert "serving_model_ready 1.0" in text


def test_predictions_do_not_depend_on_batch_company(client):
    """Padding to the batch's longest text must not change a text's scores (attention mask works).

    Exact for the fp32 backends; dynamic int8 quantizes activations with one scale per forward pass,
    so its scores move slightly with the batch's other texts (test_onnx_backend checks each backend).
    """
    tolerance = 0.02 if DEFAULT_BACKEND == "onnx-int8" else 1e-5
    short = "i am happy"
    alone = client.post("/predict", json={"texts": [short], "all_scores": True}).json()["predictions"][0]
    long_text = "i have been thinking about everything that happened last summer and i still feel strange"
    batched = client.post("/predict", json={"texts": [long_text, short], "all_scores": True}).json()
    with_company = batched["predictions"][1]
    for name, score in alone["scores"].items():
        assert with_company["scores"][name] == pytest.approx(score, abs=tolerance)


def test_predict_is_503_while_loading(tiny_model_dir, tmp_path, monkeypatch):
    """Before the warm-up finished, /ready and /predict say so instead of serving a half-loaded model."""
    import serving.runtime as runtime_module

    real = runtime_module.load_backend

    def slow_load(*args, **kwargs):
        time.sleep(1.0)
        return real(*args, **kwargs)

    monkeypatch.setattr(runtime_module, "load_backend", slow_load)
    with TestClient(create_app(make_settings(tiny_model_dir, tmp_path), tracking_uri="unused")) as c:
        ready = c.get("/ready")
        predict = c.post("/predict", json={"texts": ["hello"]})
        assert c.get("/health").status_code == 200
        assert ready.status_code == 503 and ready.json()["status"] == "loading"
        assert predict.status_code == 503 and "not ready" in predict.json()["detail"]
        wait_ready(c.get)
        assert c.post("/predict", json={"texts": ["hello"]}).status_code == 200


def test_a_ready_server_has_frozen_its_heap_and_paces_admission_on_traffic_only(tiny_model_dir, tmp_path):
    import gc

    app = create_app(make_settings(tiny_model_dir, tmp_path), tracking_uri="unused")
    with TestClient(app) as fresh:
        wait_ready(fresh.get)
        batcher = app.state.runtime.batcher
        assert gc.get_freeze_count() > 0  # the loaded libraries and model are out of the collector's way
        assert batcher.seconds_per_text == 0  # the slow warm-up passes were forgotten
        fresh.post("/predict", json={"texts": ["i feel fine"]}).raise_for_status()
        assert batcher.seconds_per_text > 0  # measured again from requests
