"""Fixtures for the hpo tests: an isolated MLflow store and small search inputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.settings import Settings


@pytest.fixture
def mlflow_settings(tmp_path: Path, monkeypatch) -> Settings:
    """Settings pointing MLflow at a fresh SQLite store in tmp_path."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "hpo-test")
    monkeypatch.setenv("ARGO_WORKFLOW_UID", "wf-test-uid")
    mlflow.set_tracking_uri(uri)
    return Settings(
        mlflow_tracking_uri=uri, mlflow_experiment_name="hpo-test", argo_workflow_uid="wf-test-uid"
    )


@pytest.fixture
def small_space(tmp_path: Path) -> Path:
    """A search space wide enough in learning rate that ASHA has clear losers to stop."""
    path = tmp_path / "space.yaml"
    path.write_text(
        "learning_rate: {distribution: loguniform, low: 1.0e-6, high: 3.0e-3}\n"
        "batch_size: {distribution: choice, values: [16, 32]}\n"
    )
    return path


@pytest.fixture(scope="session")
def tokenized_dir(tiny_base_model: Path, dataset_dir: Path, tmp_path_factory) -> Path:
    """The shared fixture's tokenized data, built with `groupby().head()`.

    tests/conftest.py's version uses `groupby().apply()`, which drops the `label` column under
    pandas 3 (KeyError); this override writes the same format until that is fixed there.
    """
    import json

    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    from transformers import AutoTokenizer

    from tests.conftest import LABELS

    out = tmp_path_factory.mktemp("tokenized")
    tokenizer = AutoTokenizer.from_pretrained(tiny_base_model)
    for split, n in (("train", 240), ("validation", 120)):
        df = pd.read_parquet(dataset_dir / f"{split}.parquet")
        df = df.groupby("label").head(n // 6).reset_index(drop=True)
        ids = tokenizer(df["text"].tolist(), truncation=True, max_length=64)["input_ids"]
        table = pa.table(
            {
                "input_ids": pa.array(ids, type=pa.list_(pa.int32())),
                "label": pa.array(df["label"].astype("int64")),
                "length": pa.array([len(x) for x in ids], type=pa.int32()),
            }
        )
        pq.write_table(table, out / f"{split}.parquet")
    tokenizer.save_pretrained(out / "tokenizer")
    (out / "labels.json").write_text(json.dumps({str(k): v for k, v in LABELS.items()}))
    (out / "manifest.json").write_text(json.dumps({"model": str(tiny_base_model), "max_length": 64}))
    return out
