"""Same answer for the same text: a text's label and probabilities do not depend on its batch-mates.

Each text scored alone and inside shuffled batches of 32 (padded to the batch's longest) must give
the same label and probabilities within 1e-5, for the default backend (static int8) and fp32 ONNX.
Fast: the tiny model on a slice of the validation texts. Slow: the packaged MiniLM on all of them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from serving.export import build_serving_artifact, find_serving_artifact
from serving.onnx_backend import OnnxBackend
from serving.settings import DEFAULT_BACKEND
from tests.conftest import FIXTURE_DATASET_DIR

TOLERANCE = 1e-5


def _texts(split: str, n: int | None = None, root: Path = FIXTURE_DATASET_DIR) -> list[str]:
    texts = pd.read_parquet(root / f"{split}.parquet")["text"].astype(str).tolist()
    return texts[:n] if n else texts


def _alone_vs_shuffled(backend, texts: list[str], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    alone = np.concatenate([backend.predict_proba([t]) for t in texts])
    order = np.random.default_rng(seed).permutation(len(texts))
    batched = np.empty_like(alone)
    for start in range(0, len(order), 32):
        idx = order[start : start + 32]
        batched[idx] = backend.predict_proba([texts[i] for i in idx])
    return alone, batched


def _backend(model_dir: Path, kind: str, tmp_path: Path, calibration: list[str]) -> OnnxBackend:
    artifact = build_serving_artifact(model_dir, tmp_path / kind, kind=kind, calibration_texts=calibration)
    onnx_path = find_serving_artifact(artifact, model_dir, kind)
    assert onnx_path is not None
    return OnnxBackend(model_dir, kind=kind, cache_dir=tmp_path, threads=1, onnx_path=onnx_path)


@pytest.mark.parametrize("kind", [DEFAULT_BACKEND, "onnx"])
def test_scores_do_not_depend_on_batch_mates(tiny_model_dir, tmp_path, kind):
    backend = _backend(tiny_model_dir, kind, tmp_path, _texts("train", 200))
    texts = _texts("validation", 256)
    alone, batched = _alone_vs_shuffled(backend, texts)
    assert (alone.argmax(axis=1) == batched.argmax(axis=1)).all()
    assert np.abs(alone - batched).max() <= TOLERANCE


def test_a_stale_or_mismatched_artifact_is_not_used(tiny_model_dir, tmp_path):
    artifact = build_serving_artifact(tiny_model_dir, tmp_path / "a", kind="onnx")
    assert find_serving_artifact(artifact, tiny_model_dir, "onnx") == artifact / "model.onnx"
    assert find_serving_artifact(artifact, tiny_model_dir, "onnx-int8-static") is None  # other kind
    (artifact / "manifest.json").write_text('{"kind": "onnx", "source_key": "stale"}')
    assert find_serving_artifact(artifact, tiny_model_dir, "onnx") is None  # other weights
    assert find_serving_artifact(None, tiny_model_dir, "onnx") is None


@pytest.mark.slow
@pytest.mark.full_data
def test_all_validation_texts_alone_vs_shuffled_batches_minilm(tmp_path, full_dataset_dir):
    """The packaged MiniLM (seeded 6-label head) on the whole validation split, default backend."""
    from benchmarks.serving_bench import build_model_dir

    model_dir = build_model_dir(tmp_path / "model")
    backend = _backend(model_dir, DEFAULT_BACKEND, tmp_path, _texts("train", root=full_dataset_dir))
    alone, batched = _alone_vs_shuffled(backend, _texts("validation", root=full_dataset_dir))
    assert (alone.argmax(axis=1) == batched.argmax(axis=1)).all()
    assert np.abs(alone - batched).max() <= TOLERANCE


def test_a_temperature_in_the_model_dir_softens_scores_without_changing_labels(tiny_model_dir, tmp_path):
    import json
    import shutil

    from serving.model_loader import ModelLoadError, read_temperature

    warm = tmp_path / "warm"
    shutil.copytree(tiny_model_dir, warm)
    assert read_temperature(warm) == 1.0
    texts = _texts("validation", 16)
    plain = _backend(warm, "onnx", tmp_path / "plain", []).predict_proba(texts)
    (warm / "temperature.json").write_text(json.dumps({"temperature": 3.0}))
    soft = _backend(warm, "onnx", tmp_path / "soft", []).predict_proba(texts)
    assert (plain.argmax(axis=1) == soft.argmax(axis=1)).all()
    assert (soft.max(axis=1) <= plain.max(axis=1) + 1e-7).all()
    (warm / "temperature.json").write_text('{"temperature": -1}')
    with pytest.raises(ModelLoadError, match="positive"):
        read_temperature(warm)


def test_the_server_loads_the_registered_artifact_instead_of_exporting(tiny_model_dir, tmp_path):
    """A model with its serving artifact (register's) is served from it, with no calibration texts at hand;
    the artifact is also found through the model version's tag (downloaded once into the cache)."""
    import shutil

    from fastapi.testclient import TestClient

    from serving.app import create_app
    from serving.export import SERVING_ARTIFACT_PATH, SERVING_ARTIFACT_TAG
    from serving.model_loader import ResolvedModel, fetch_serving_artifact
    from serving.settings import ServeSettings
    from tests.serving.conftest import wait_ready

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    artifact = build_serving_artifact(
        model, model / SERVING_ARTIFACT_PATH, kind=DEFAULT_BACKEND, calibration_texts=_texts("train", 64)
    )
    settings = ServeSettings(model_uri=str(model), cache_dir=tmp_path / "cache", threads=1)
    with TestClient(create_app(settings, tracking_uri="unused")) as client:
        wait_ready(client.get)
        info = client.get("/info").json()
    assert info["backend"] == DEFAULT_BACKEND and info["serving_artifact"] == str(artifact)
    assert not (tmp_path / "cache" / "onnx").exists()  # nothing exported

    resolved = ResolvedModel(
        model_uri="models:/m/1",
        model_dir=tiny_model_dir,
        model_version="1",
        lineage={SERVING_ARTIFACT_TAG: str(artifact)},
    )
    fetched = fetch_serving_artifact(resolved, tmp_path / "cache2", tracking_uri=None)
    assert (
        fetched is not None
        and (fetched / "model.onnx").read_bytes() == (artifact / "model.onnx").read_bytes()
    )
