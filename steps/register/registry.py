"""Model-registry and artifact helpers for the register step (MLflow client calls only)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from shared.errors import StepError
from steps.register.evaluate import EvalMetrics, write_report

CHALLENGER_ALIAS = "challenger"
CHAMPION_ALIAS = "champion"


def find_version_for(client, model_name: str, parent_run_id: str, source_run_id: str):
    """The version already registered from this parent's chosen child run, if any (idempotency)."""
    versions = client.search_model_versions(
        f"name = '{model_name}' and tags.parent_run_id = '{parent_run_id}'"
    )
    matches = [v for v in versions if source_run_id in (v.run_id, v.tags.get("source_run_id"))]
    return min(matches, key=lambda v: int(v.version)) if matches else None


def version_by_alias(client, model_name: str, alias: str):
    """The version an alias points at, or None when the model or the alias does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(model_name, alias)
    except MlflowException:
        return None


def download_model_dir(model_uri: str, dst: Path) -> Path:
    """Download an MLflow model (runs:/ or models:/) and return the project-format dir inside it."""
    import mlflow

    from shared.model_package import model_dir_from_mlflow

    local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(dst))
    return model_dir_from_mlflow(Path(local))


def cached_metrics(version, data_hash: str) -> EvalMetrics | None:
    """The metrics a version was registered with, when they were computed on exactly this data."""
    import mlflow

    if version is None or version.tags.get("eval_data_hash") != data_hash:
        return None
    uri = version.tags.get("evaluation_artifacts")
    if not uri:
        return None
    try:
        text = mlflow.artifacts.load_text(f"{uri}/metrics.json")
    except Exception:  # a missing or unreadable report just means: evaluate again
        return None
    metrics = EvalMetrics.model_validate_json(text)
    return metrics if metrics.data_hash == data_hash else None


def log_evaluation(client, run_id: str, metrics: EvalMetrics, artifact_dir: str, metric_prefix: str) -> str:
    """Log the report files under `artifact_dir` of the run and its headline metrics; return the URI."""
    from mlflow.entities import Metric

    with tempfile.TemporaryDirectory(prefix="register-eval-") as tmp:
        client.log_artifacts(run_id, str(write_report(metrics, Path(tmp))), artifact_dir)
    now = int(time.time() * 1000)
    values = {"accuracy": metrics.accuracy, "f1_macro": metrics.f1_macro}
    if metrics.calibration is not None:  # expected calibration error without / with the temperature
        values["ece_before"] = metrics.calibration.ece_before
        values["ece_after"] = metrics.calibration.ece_after
        values["temperature"] = metrics.calibration.temperature
    client.log_batch(
        run_id, metrics=[Metric(f"{metric_prefix}_{name}", float(v), now, 0) for name, v in values.items()]
    )
    return f"runs:/{run_id}/{artifact_dir}"


def create_version(client, model_name: str, model_uri: str, tags: dict[str, str]):
    """Register `model_uri` as a new version (creating the registered model the first time)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.register_model(model_uri, model_name, tags=tags)
    except MlflowException as exc:
        from shared.failures import is_transient

        if is_transient(exc):  # e.g. a 503 from a proxy: retried (exit 75), the rerun finds the version
            raise
        raise StepError(f"cannot register {model_uri} as {model_name!r}: {exc.message}") from None
