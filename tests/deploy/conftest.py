"""Deploy fixtures: a throwaway SQLite MLflow registry with two good model versions and a broken one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.deploy.helpers import MODEL


@pytest.fixture(scope="module")
def registry(tiny_model_dir: Path, tmp_path_factory) -> str:
    """A SQLite MLflow registry with versions 1, 2 (good) and 3 (corrupted model.safetensors)."""
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("deploy-registry")
    for name in ("v1", "v2", "broken"):
        shutil.copytree(tiny_model_dir, root / name)
    (root / "broken" / "model.safetensors").write_bytes(b"\x00not a safetensors file" * 64)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model(MODEL)
    for name in ("v1", "v2", "broken"):
        client.create_model_version(MODEL, source=str(root / name))
    return uri
