"""MLflow helpers shared by the steps: connect with a clear error, find runs, apply tags."""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import urlparse

from shared.errors import StepError, TransientError
from shared.failures import TRANSIENT_HTTP_STATUS, is_transient
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
        response = requests.get(uri.rstrip("/") + "/health", timeout=timeout)
    except requests.RequestException as exc:
        name = exc.__class__.__name__
        raise TransientError(f"MLflow tracking server {uri} is unreachable: {name}") from exc
    if response.status_code in TRANSIENT_HTTP_STATUS:  # overloaded or restarting: try again later
        raise TransientError(f"MLflow tracking server {uri} is unavailable: HTTP {response.status_code}")


LOCAL_STORE_FILE = "mlflow.db"  # the SQLite store under Settings.local_dir when no tracking URI is given
LOCAL_ARTIFACTS_DIR = "mlartifacts"  # artifacts of a SQLite store live beside its database file


def tracking_uri(settings: Settings) -> str:
    """The tracking URI to use: the settings' one, else one this process already set, else the SQLite
    store in `settings.local_dir`, never MLflow's own default (`./mlflow.db` in the current directory)."""
    import mlflow

    if settings.mlflow_tracking_uri:
        return settings.mlflow_tracking_uri
    if mlflow.is_tracking_uri_set():
        return mlflow.get_tracking_uri()
    return f"sqlite:///{Path(settings.local_dir).resolve() / LOCAL_STORE_FILE}"


def _sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///") :].split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path).resolve()


def local_artifact_root(uri: str) -> Path | None:
    """Artifact folder for a SQLite store: `mlartifacts` beside the database file (None: not SQLite).

    MLflow would otherwise give a new experiment `./mlruns` in whatever directory the process runs in.
    """
    db = _sqlite_path(uri)
    return None if db is None else db.parent / LOCAL_ARTIFACTS_DIR


def get_or_create_experiment(name: str, uri: str):
    """The experiment `name` at `uri`, created if missing (on SQLite, with its artifacts beside the db)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment
    root = local_artifact_root(uri)
    try:
        client.create_experiment(name, artifact_location=str(root) if root else None)
    except MlflowException:  # created meanwhile by a concurrent process: use theirs
        if client.get_experiment_by_name(name) is None:
            raise
    return client.get_experiment_by_name(name)


def connect(settings: Settings) -> str:
    """Point MLflow at the settings' tracking URI and experiment; return the experiment id."""
    import mlflow

    uri = tracking_uri(settings)
    check_tracking_reachable(uri)
    if (db := _sqlite_path(uri)) is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    try:
        experiment = get_or_create_experiment(settings.mlflow_experiment_name, uri)
        experiment = mlflow.set_experiment(experiment_id=experiment.experiment_id)
    except Exception as exc:  # MLflow raises many types for a broken store
        name = settings.mlflow_experiment_name
        error = TransientError if is_transient(exc) else StepError
        raise error(f"cannot use MLflow experiment {name!r} at {uri}: {exc}") from exc
    # A wrong S3 credential or a missing bucket must fail now, not after the whole search.
    check_s3_uri(experiment.artifact_location or "", settings)
    log.info("MLflow: %s, experiment %s (%s)", uri, experiment.name, experiment.experiment_id)
    return experiment.experiment_id
