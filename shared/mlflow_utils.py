"""MLflow helpers shared by the steps: connect with a clear error, find runs, apply tags."""

from __future__ import annotations

import logging
from urllib.parse import urlparse

from shared.errors import StepError
from shared.object_store import check_s3_uri
from shared.settings import Settings

log = logging.getLogger(__name__)


def check_tracking_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail fast, naming the endpoint, when an HTTP tracking server does not answer."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("http", "https"):
        return
    import requests

    try:
        requests.get(uri.rstrip("/") + "/health", timeout=timeout)
    except requests.RequestException as exc:
        raise StepError(f"MLflow tracking server {uri} is unreachable: {exc.__class__.__name__}") from None


def connect(settings: Settings) -> str:
    """Point MLflow at the settings' tracking URI and experiment; return the experiment id."""
    import mlflow

    uri = settings.mlflow_tracking_uri or mlflow.get_tracking_uri()
    check_tracking_reachable(uri)
    mlflow.set_tracking_uri(uri)
    try:
        experiment = mlflow.set_experiment(settings.mlflow_experiment_name)
    except Exception as exc:  # MLflow raises many types for a broken store
        name = settings.mlflow_experiment_name
        raise StepError(f"cannot use MLflow experiment {name!r} at {uri}: {exc}") from exc
    # A wrong S3 credential or a missing bucket must fail now, not after the whole search.
    check_s3_uri(experiment.artifact_location or "", settings)
    log.info("MLflow: %s, experiment %s (%s)", uri, experiment.name, experiment.experiment_id)
    return experiment.experiment_id
