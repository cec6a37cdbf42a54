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
