"""The serving artifact: the exact graph the server runs, built once when a model is registered.

`build_serving_artifact` writes `model.onnx` (the default backend's graph: static int8 calibrated
on training texts) and `manifest.json` (backend kind, a content hash of the source weights, the
export recipe version) into a folder. Register builds it, evaluates *that* graph
(`evaluate_serving_artifact`), logs the folder to the model's run and tags the model version with
its URI (`SERVING_ARTIFACT_TAG`). The server downloads it and loads it as is
(`find_serving_artifact`), so the evaluated artifact is the served one and start-up exports
nothing; a model registered before this (no tag), or a manifest that does not match the weights
or the configured backend, falls back to exporting at start-up (`serving.onnx_backend`).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from serving.onnx_backend import EXPORT_FORMAT_VERSION, ONNX_KINDS, build_onnx, cache_key

log = logging.getLogger(__name__)

SERVING_ARTIFACT_PATH = "serving_artifact"  # artifact folder in the model's run
SERVING_ARTIFACT_TAG = "serving_artifact_uri"  # model version tag: where that folder is
ONNX_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
CALIBRATION_TEXTS = 512  # training texts the static int8 scales are calibrated on
CALIBRATION_SEED = 0


def calibration_sample(
    texts: list[str], n: int = CALIBRATION_TEXTS, seed: int = CALIBRATION_SEED
) -> list[str]:
    """A fixed random sample of `n` texts (the same texts for the same data)."""
    if len(texts) <= n:
        return list(texts)
    picked = np.random.default_rng(seed).choice(len(texts), size=n, replace=False)
    return [texts[int(i)] for i in sorted(picked)]


def build_serving_artifact(
    model_dir: Path,
    out_dir: Path,
    *,
    kind: str,
    calibration_texts: list[str] | None = None,
    max_tokens: int = 128,
) -> Path:
    """Write `model.onnx` + `manifest.json` for `model_dir` into `out_dir` and return `out_dir`."""
    if kind not in ONNX_KINDS:
        raise ValueError(f"serving artifacts are ONNX graphs; {kind!r} is not one of {', '.join(ONNX_KINDS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    calibration = calibration_sample(calibration_texts or []) if kind == "onnx-int8-static" else []
    build_onnx(
        Path(model_dir), kind, out_dir / ONNX_FILE, calibration_texts=calibration, max_tokens=max_tokens
    )
    manifest = {
        "kind": kind,
        "source_key": cache_key(Path(model_dir), kind),
        "export_format_version": EXPORT_FORMAT_VERSION,
        "calibration_texts": len(calibration),
        "max_tokens": max_tokens,
        "build_seconds": round(time.perf_counter() - started, 2),
    }
    (out_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return out_dir


def find_serving_artifact(artifact_dir: Path | None, model_dir: Path, kind: str) -> Path | None:
    """The artifact's ONNX graph when it was built from these weights for `kind`, else None (logged)."""
    if artifact_dir is None:
        return None
    manifest_path = Path(artifact_dir) / MANIFEST_FILE
    onnx_path = Path(artifact_dir) / ONNX_FILE
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        log.warning("serving artifact %s unusable (%s): exporting at start-up", artifact_dir, exc)
        return None
    if manifest.get("kind") != kind:
        log.warning(
            "serving artifact is %s but SERVE_BACKEND is %s: exporting at start-up",
            manifest.get("kind"),
            kind,
        )
        return None
    if manifest.get("source_key") != cache_key(Path(model_dir), kind) or not onnx_path.is_file():
        log.warning(
            "serving artifact %s does not match the model's weights: exporting at start-up", artifact_dir
        )
        return None
    return onnx_path


def predict_ids(backend, texts: list[str], batch_size: int = 32) -> np.ndarray:
    """Predicted label ids of `texts`, batched by length as the server batches them."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.empty(len(texts), dtype=np.int64)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        out[idx] = backend.predict_proba([texts[i] for i in idx]).argmax(axis=1)
    return out


def evaluate_serving_artifact(
    artifact_dir: Path, model_dir: Path, texts: list[str], *, threads: int = 0
) -> list[str]:
    """Predicted label names of `texts` by the artifact's graph, exactly as the server computes them."""
    from serving.onnx_backend import OnnxBackend

    manifest = json.loads((Path(artifact_dir) / MANIFEST_FILE).read_text())
    backend = OnnxBackend(
        Path(model_dir),
        kind=manifest["kind"],
        cache_dir=Path(artifact_dir),
        max_tokens=int(manifest.get("max_tokens", 128)),
        threads=threads,
        onnx_path=Path(artifact_dir) / ONNX_FILE,
    )
    return [backend.labels[int(i)] for i in predict_ids(backend, texts)]


def read_training_texts(dataset_dir: Path) -> list[str]:
    """Calibration texts from a dvc-fetch dataset dir: the train split, else validation (texts only)."""
    import pandas as pd

    for split in ("train", "validation"):
        path = Path(dataset_dir) / f"{split}.parquet"
        if path.is_file():
            return pd.read_parquet(path, columns=["text"])["text"].astype(str).tolist()
    return []


def build_evaluate_and_log(
    client, run_id: str, model_dir: Path, texts: list[str], dataset_dir: Path, *, kind: str | None = None
) -> tuple[list[str], str]:
    """For register: build the serving artifact once, predict `texts` with it, log it to `run_id`.

    Returns the predicted label names (to score exactly what will be served) and the artifact's
    URI, which register puts on the model version as `SERVING_ARTIFACT_TAG`.
    """
    import tempfile

    from serving.settings import DEFAULT_BACKEND

    kind = kind or DEFAULT_BACKEND
    with tempfile.TemporaryDirectory(prefix="serving-artifact-") as tmp:
        artifact = build_serving_artifact(
            Path(model_dir),
            Path(tmp) / SERVING_ARTIFACT_PATH,
            kind=kind,
            calibration_texts=read_training_texts(dataset_dir),
        )
        predicted = evaluate_serving_artifact(artifact, Path(model_dir), texts)
        client.log_artifacts(run_id, str(artifact), SERVING_ARTIFACT_PATH)
    log.info("serving artifact (%s) evaluated and logged to run %s", kind, run_id)
    return predicted, f"runs:/{run_id}/{SERVING_ARTIFACT_PATH}"
