"""ONNX Runtime backends (fp32 and dynamic int8) against PyTorch on the tiny model; export cache; settings."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from serving import onnx_backend
from serving.app import create_app
from serving.backends import TorchBackend, load_backend
from serving.settings import ServeSettings
from tests.serving.conftest import wait_ready

TEXTS = [
    "i feel wonderful today",
    "i am furious about the way they treated me",
    "i have been feeling rather anxious about the exam tomorrow and i cannot sleep at all tonight",
    "what a surprise",
    "i miss my grandmother so much since she passed away last winter",
    "hi",
]
SHORT = "i am sad"
LONGER = [
    "i have been thinking about everything that happened last summer and i still feel strange about it",
    "the weather was grey all week and nothing i did seemed to lift my mood even a little bit",
]


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def backends(tiny_model_dir: Path, onnx_cache: Path) -> dict:
    return {
        kind: load_backend(kind, tiny_model_dir, 128, cache_dir=onnx_cache, threads=1)
        for kind in ("torch", "onnx", "onnx-int8")
    }


def test_onnx_fp32_matches_torch(backends):
    ref = backends["torch"].predict_proba(TEXTS)
    got = backends["onnx"].predict_proba(TEXTS)
    assert got.shape == ref.shape == (len(TEXTS), 6)
    np.testing.assert_allclose(got, ref, atol=1e-4)


def test_onnx_int8_is_close_to_torch(backends):
    ref = backends["torch"].predict_proba(TEXTS)
    got = backends["onnx-int8"].predict_proba(TEXTS)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, atol=0.02)  # int8 weights and activations: loose
    assert np.mean(got.argmax(axis=1) == ref.argmax(axis=1)) >= 0.5


@pytest.mark.parametrize("kind", ["onnx", "onnx-int8"])
def test_rows_are_probability_distributions(backends, kind):
    probs = backends[kind].predict_proba(TEXTS)
    assert probs.dtype == np.float32 and np.all(np.isfinite(probs)) and np.all(probs >= 0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert backends[kind].labels == backends["torch"].labels


@pytest.mark.parametrize("kind, atol", [("torch", 1e-5), ("onnx", 1e-5), ("onnx-int8", 0.02)])
def test_padding_invariance(backends, kind, atol):
    """A short text scores the same alone and padded in a batch with longer texts.

    Exact for fp32; int8 activations get one quantization scale per forward pass, so its scores
    move a little with the batch's other texts (hence the loose tolerance).
    """
    backend = backends[kind]
    alone = backend.predict_proba([SHORT])[0]
    batched = backend.predict_proba([*LONGER, SHORT])[-1]
    np.testing.assert_allclose(batched, alone, atol=atol)


def test_truncation_to_max_tokens(tiny_model_dir, onnx_cache):
    backend = load_backend("onnx", tiny_model_dir, 8, cache_dir=onnx_cache, threads=1)
    from transformers import AutoTokenizer

    ids = backend.prepare([LONGER[0]])["input_ids"][0]
    assert len(ids) == 8
    cut = AutoTokenizer.from_pretrained(tiny_model_dir).decode(ids, skip_special_tokens=True)
    np.testing.assert_allclose(backend.predict_proba([LONGER[0]]), backend.predict_proba([cut]), atol=1e-5)


def test_second_load_reuses_the_cached_export(tiny_model_dir, tmp_path, monkeypatch):
    first = load_backend("onnx-int8", tiny_model_dir, 128, cache_dir=tmp_path, threads=1)
    files = sorted(p.name for p in (tmp_path / "onnx").glob("*.onnx"))
    assert len(files) == 2  # the fp32 export and its int8 quantization
    assert not list((tmp_path / "onnx").glob("*.tmp"))  # no half-written leftovers

    def refuse(*args, **kwargs):
        raise AssertionError("the cached graph should have been reused")

    monkeypatch.setattr(onnx_backend, "export_onnx", refuse)
    monkeypatch.setattr(onnx_backend, "quantize_int8", refuse)
    for kind in ("onnx", "onnx-int8"):
        again = load_backend(kind, tiny_model_dir, 128, cache_dir=tmp_path, threads=1)
        assert again.model_path.is_file()
    assert again.model_path == first.model_path
    np.testing.assert_array_equal(again.predict_proba(TEXTS), first.predict_proba(TEXTS))


def test_cache_key_follows_the_model_content(tiny_model_dir, tmp_path):
    copy = Path(shutil.copytree(tiny_model_dir, tmp_path / "copy"))
    key = onnx_backend.cache_key(tiny_model_dir, "onnx")
    assert onnx_backend.cache_key(copy, "onnx") == key  # same content, same key, wherever it lies
    assert onnx_backend.cache_key(copy, "onnx-int8") != key
    (copy / "config.json").write_text((copy / "config.json").read_text() + "\n")
    assert onnx_backend.cache_key(copy, "onnx") != key


def test_concurrent_loads_export_once(tiny_model_dir, tmp_path, monkeypatch):
    """Workers starting together (gunicorn) share one export; each gets a complete graph."""
    calls = []
    real = onnx_backend.export_onnx

    def counting_export(model_dir, out_path):
        calls.append(out_path)
        real(model_dir, out_path)

    monkeypatch.setattr(onnx_backend, "export_onnx", counting_export)
    paths, errors = [], []

    def load():
        try:
            paths.append(onnx_backend.ensure_onnx_model(tiny_model_dir, "onnx", tmp_path))
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and len(paths) == 3 and len(set(paths)) == 1
    assert len(calls) == 1 and not calls[0].exists()  # written to a temporary name, then renamed


def test_app_serves_with_onnx_int8_from_the_environment(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("SERVE_BACKEND", "onnx-int8")
    settings = ServeSettings(model_uri=str(tiny_model_dir), cache_dir=tmp_path / "cache", threads=1)
    assert settings.backend == "onnx-int8"
    with TestClient(create_app(settings, tracking_uri="unused")) as c:
        wait_ready(c.get)
        assert c.get("/info").json()["backend"] == "onnx-int8"
        response = c.post("/predict", json={"texts": TEXTS[:3], "all_scores": True})
        assert response.status_code == 200, response.text
        predictions = response.json()["predictions"]
        assert len(predictions) == 3
        for p in predictions:
            assert sum(p["scores"].values()) == pytest.approx(1.0, abs=1e-4)
        assert 'backend="onnx-int8"' in c.get("/metrics").text


def test_unknown_backend_is_a_clear_settings_error(monkeypatch):
    monkeypatch.setenv("SERVE_BACKEND", "tensorrt")
    with pytest.raises(ValidationError) as info:
        ServeSettings()
    message = str(info.value)
    assert "backend" in message and "'torch', 'onnx', 'onnx-int8-static' or 'onnx-int8'" in message


def test_load_backend_names_the_available_backends(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="unknown backend 'tensorrt'; available: torch, onnx, onnx-int8"):
        load_backend("tensorrt", tiny_model_dir, 128, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="needs a cache_dir"):
        load_backend("onnx", tiny_model_dir, 128)
    assert isinstance(load_backend("torch", tiny_model_dir, 128), TorchBackend)
