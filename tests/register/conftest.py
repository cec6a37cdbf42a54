"""Fixtures for the register step: a real MLflow server and hpo-like parent/child runs built here."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.mlflow_server import mlflow_server  # noqa: F401  (the fixture)

from .helpers import LABEL_IDS, Search, Trial


@pytest.fixture(scope="session")
def constant_model_dirs(tiny_model_dir: Path, tmp_path_factory) -> dict[str, Path]:
    """Model dirs whose head always answers one label, so their accuracy is that label's share.

    That makes "better" and "worse" challengers exact and cheap, without training.
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from shared.model_package import read_labels, save_model_dir

    out = {}
    for name in ("joy", "sadness", "surprise"):
        model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir)
        with torch.no_grad():
            model.classifier.weight.zero_()
            model.classifier.bias.fill_(-5.0)
            model.classifier.bias[LABEL_IDS[name]] = 5.0
        target = tmp_path_factory.mktemp(f"always-{name}")
        save_model_dir(
            model, AutoTokenizer.from_pretrained(tiny_model_dir), read_labels(tiny_model_dir), target
        )
        out[name] = target
    return out


@pytest.fixture(scope="session")
def register_settings(mlflow_server):  # noqa: F811  (uses the imported fixture)
    """Settings of the register step pointed at the test server (what the CLI reads from env)."""
    from shared.settings import Settings

    return Settings(
        mlflow_tracking_uri=mlflow_server.url,
        mlflow_experiment_name="register-tests",
        argo_workflow_uid="wf-register-step",
        docker_image_tag="register-test-image",
    )


@pytest.fixture
def make_search(register_settings):
    """Build an hpo-like parent run with child runs, the way the hpo step lays them out."""
    import mlflow

    from shared.lineage import lineage_tags
    from shared.model_package import log_model

    def build(
        trials: list[Trial],
        *,
        best: int | None = None,
        workflow_uid: str = "wf-hpo-1",
        dataset_hash: str = "sha256-of-dataset",
    ) -> Search:
        mlflow.set_tracking_uri(register_settings.mlflow_tracking_uri)
        mlflow.set_experiment(register_settings.mlflow_experiment_name)
        hpo_settings = register_settings.model_copy(
            update={"argo_workflow_uid": workflow_uid, "docker_image_tag": "hpo-image-1.2.3"}
        )
        tags = lineage_tags(
            hpo_settings,
            dataset_hash=dataset_hash,
            registry_url="/srv/data-registry",
            data_version="emotion-v1.0.0",
        )
        child_ids = []
        with mlflow.start_run(run_name=f"hpo-{uuid.uuid4().hex[:8]}", tags=tags) as parent:
            for i, trial in enumerate(trials):
                with mlflow.start_run(
                    run_name=f"trial-{i}", nested=True, tags={**tags, "trial_id": f"t{i:03d}"}
                ):
                    mlflow.log_params(trial.params or {"learning_rate": 1e-4 * (i + 1), "batch_size": 16})
                    mlflow.log_metrics({"val_loss": trial.val_loss, "val_accuracy": 1.0 - trial.val_loss / 2})
                    if trial.model_dir is not None:
                        log_model(trial.model_dir)
                    child_ids.append(mlflow.active_run().info.run_id)
                if trial.status != "FINISHED":
                    mlflow.MlflowClient().set_terminated(child_ids[-1], status=trial.status)
            if best is not None:
                mlflow.set_tag("best_run_id", child_ids[best])
        return Search(parent.info.run_id, child_ids)

    return build
