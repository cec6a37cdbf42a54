"""Find, download (once, cached) and load the model the server answers with.

A model URI is one of:
- `models:/<name>@<alias>` or `models:/<name>/<version>`: a registry version; its tags are the lineage;
- `runs:/<run_id>/<path>`: a model logged to a run (tags of the run are the lineage);
- a local directory: a project-format model directory, or a downloaded MLflow model folder.

Downloads go to `<cache_dir>/models/<name>/<version>` or `<cache_dir>/runs/<run_id>/<path>`, written
to a temporary sibling and renamed, so a half-finished download is never mistaken for a cached one.
Weights are loaded from safetensors (`shared.model_package`); nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.mlflow_contract import DATA_VERSION_TAG
from shared.model_package import MLFLOW_MODEL_DIR_ARTIFACT

log = logging.getLogger(__name__)

_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>[^/]+))/?$")
_RUNS_URI = re.compile(r"^runs:/(?P<run_id>[^/]+)/(?P<path>.+?)/?$")
_LOGGED_MODEL_URI = re.compile(r"^models:/(?P<model_id>m-[0-9a-f]+)/?$")
TEMPERATURE_FILE = "temperature.json"
LINEAGE_DATA_VERSION_TAGS = (DATA_VERSION_TAG, "data_version")


class ModelLoadError(RuntimeError):
    """The model cannot be found, downloaded or loaded; the message says which and why."""


@dataclass(frozen=True)
class ResolvedModel:
    """Where the model directory is on disk and what it is (version, run, lineage)."""

    model_uri: str
    model_dir: Path
    model_version: str
    run_id: str | None = None
    lineage: dict[str, str] = field(default_factory=dict)

    @property
    def data_version(self) -> str | None:
        for key in LINEAGE_DATA_VERSION_TAGS:
            if key in self.lineage:
                return self.lineage[key]
        return None


def _client(tracking_uri: str | None):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def _preflight_store(download_uri: str) -> None:
    """An S3-backed model with a wrong credential or bucket: say so, naming the endpoint."""
    from shared.errors import StepError
    from shared.object_store import check_s3_uri
    from shared.settings import Settings

    try:
        check_s3_uri(download_uri, Settings())
    except StepError as exc:
        raise ModelLoadError(str(exc)) from None


def _download(artifact_uri: str, target: Path, tracking_uri: str | None) -> Path:
    """Download `artifact_uri` into `target` unless a finished copy is already there."""
    import mlflow

    if target.is_dir():
        log.info("model cache hit: %s", target)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        mlflow.artifacts.download_artifacts(
            artifact_uri=artifact_uri, dst_path=str(tmp), tracking_uri=tracking_uri
        )
        tmp.rename(target)
    except OSError:
        if not target.is_dir():  # another process may have won the rename race
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("downloaded %s to %s", artifact_uri, target)
    return target


def _artifact_from_mlmodel(root: Path) -> Path | None:
    """The `model_dir` artifact path recorded in an MLflow model's MLmodel file (MLflow 3 names the
    folder after the logged directory, e.g. `artifacts/<dir name>`, not after the artifact key)."""
    import yaml

    mlmodel = root / "MLmodel"
    if not mlmodel.is_file():
        return None
    flavor = (yaml.safe_load(mlmodel.read_text()) or {}).get("flavors", {}).get("python_function", {})
    path = (flavor.get("artifacts") or {}).get(MLFLOW_MODEL_DIR_ARTIFACT, {}).get("path")
    return root / path if path else None


def _find_model_dir(root: Path) -> Path:
    """The project-format model directory inside a download or a local folder (maybe one level down)."""
    for base in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
        from_mlmodel = _artifact_from_mlmodel(base)
        candidates = [from_mlmodel] if from_mlmodel else []
        for candidate in [*candidates, base, base / "artifacts" / MLFLOW_MODEL_DIR_ARTIFACT]:
            if (candidate / "model.safetensors").is_file():
                return candidate
    raise ModelLoadError(f"{root} holds no model directory (no model.safetensors found)")


def _user_tags(tags: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in tags.items() if not k.startswith("mlflow.")}


LOCAL_VERSION = "local"


def run_version(run_id: str) -> str:
    """The version a server reports for a model logged by a run (`runs:/<run_id>/...`)."""
    return f"run-{run_id[:12]}"


def reported_version(model_uri: str) -> str | None:
    """The model_version `/ready` will report for `model_uri`, when it needs no registry lookup:
    `run-<id>` for runs:/, `local` for a directory; None for models:/ (the registry's number)."""
    if _MODELS_URI.match(model_uri):
        return None
    if match := _RUNS_URI.match(model_uri):
        return run_version(match["run_id"])
    return LOCAL_VERSION


def resolve_model(model_uri: str, cache_dir: Path, tracking_uri: str | None = None) -> ResolvedModel:
    """Resolve a model URI to a local model directory plus its version, run id and lineage."""
    cache_dir = Path(cache_dir)
    try:
        if match := _MODELS_URI.match(model_uri):
            return _resolve_registry(model_uri, match, cache_dir, tracking_uri)
        if match := _RUNS_URI.match(model_uri):
            return _resolve_run(model_uri, match, cache_dir, tracking_uri)
    except ModelLoadError:
        raise
    except Exception as exc:  # MLflow raises many types (RestException, MlflowException, OSError)
        raise ModelLoadError(f"cannot resolve {model_uri}: {exc.__class__.__name__}: {exc}") from exc
    path = Path(model_uri).expanduser()
    if path.is_dir():
        return ResolvedModel(
            model_uri=model_uri, model_dir=_find_model_dir(path), model_version=LOCAL_VERSION
        )
    raise ModelLoadError(
        f"model URI {model_uri!r} is not models:/<name>@<alias>, models:/<name>/<version>, "
        "runs:/<run_id>/<path> or an existing directory"
    )


def _version_files_uri(client, name: str, version: str) -> str:
    """Where a model version's files are, resolved with `client`: MLflow resolves a `models:/` URI
    with the process-wide registry and tracking URIs, whatever `tracking_uri` was passed."""
    uri = client.get_model_version_download_uri(name, version)
    if match := _LOGGED_MODEL_URI.match(uri):  # registered from a logged model (MLflow 3)
        uri = client.get_logged_model(match["model_id"]).artifact_location
    return uri


def _resolve_registry(model_uri: str, match: re.Match, cache_dir: Path, tracking_uri: str | None):
    client = _client(tracking_uri)
    name = match["name"]
    if match["alias"]:
        mv = client.get_model_version_by_alias(name, match["alias"])
    elif match["version"].isdigit():
        mv = client.get_model_version(name, match["version"])
    else:
        raise ModelLoadError(
            f"{model_uri}: version must be a number or use @alias (stages are not supported)"
        )
    # The run id makes the key unique across tracking stores: version numbers are not.
    target = cache_dir / "models" / name / f"{mv.version}-{mv.run_id or 'norun'}"
    download_uri = None if target.is_dir() else _version_files_uri(client, name, mv.version)
    if download_uri:
        _preflight_store(download_uri)
    local = _download(download_uri or model_uri, target, tracking_uri)  # a cache hit downloads nothing
    return ResolvedModel(
        model_uri=model_uri,
        model_dir=_find_model_dir(local),
        model_version=str(mv.version),
        run_id=mv.run_id,
        lineage=_user_tags(dict(mv.tags or {})),
    )


def _resolve_run(model_uri: str, match: re.Match, cache_dir: Path, tracking_uri: str | None):
    client = _client(tracking_uri)
    run_id, path = match["run_id"], match["path"]
    run = client.get_run(run_id)
    target = cache_dir / "runs" / run_id / path.replace("/", "__")
    local = _download(_logged_model_uri(client, run, path) or model_uri, target, tracking_uri)
    return ResolvedModel(
        model_uri=model_uri,
        model_dir=_find_model_dir(local),
        model_version=run_version(run_id),
        run_id=run_id,
        lineage=_user_tags(dict(run.data.tags)),
    )


def _logged_model_uri(client, run, path: str) -> str | None:
    """MLflow 3 keeps a run's model as a LoggedModel (`models:/<model_id>`), not as run artifacts."""
    name, _, rest = path.partition("/")
    models = client.search_logged_models(
        experiment_ids=[run.info.experiment_id], filter_string=f"name = '{name}'", max_results=100
    )
    for model in models:
        if model.source_run_id == run.info.run_id:  # its artifact location needs no tracking lookup
            return model.artifact_location.rstrip("/") + (f"/{rest}" if rest else "")
    return None


def read_temperature(model_dir: Path) -> float:
    """The calibration temperature stored with the model (1.0 without); a bad file fails the load.

    Scores are `softmax(logits / T)`: the label never changes, only the confidence.
    """
    from shared.errors import StepError
    from shared.model_package import read_temperature as read_stored_temperature

    try:
        return read_stored_temperature(model_dir)
    except StepError as exc:
        raise ModelLoadError(str(exc)) from None


def fetch_serving_artifact(resolved: ResolvedModel, cache_dir: Path, tracking_uri: str | None) -> Path | None:
    """The model version's serving artifact folder (downloaded once, cached), if register logged one.

    A local model directory may carry one beside its weights, in `serving_artifact/`.
    """
    from serving.export import MANIFEST_FILE, SERVING_ARTIFACT_PATH, SERVING_ARTIFACT_TAG

    local = Path(resolved.model_dir) / SERVING_ARTIFACT_PATH
    if local.is_dir():
        return local
    uri = resolved.lineage.get(SERVING_ARTIFACT_TAG)
    if not uri:
        return None
    key = hashlib.sha256(uri.encode()).hexdigest()[:16]
    try:
        local = _download(uri, Path(cache_dir) / "serving_artifacts" / key, tracking_uri)
    except Exception as exc:  # the weights are there: export at start-up instead of failing
        log.warning("cannot download the serving artifact %s (%s): exporting at start-up", uri, exc)
        return None
    # MLflow downloads a folder as <dst>/<its name>
    nested = [p for p in [local, *sorted(local.iterdir())] if (p / MANIFEST_FILE).is_file()]
    return nested[0] if nested else local


def read_calibration_texts(path: Path | None, limit: int = 512) -> list[str]:
    """Calibration texts for a start-up static int8 export: parquet column `text`, or one text a line."""
    if path is None:
        return []
    from serving.export import calibration_sample

    path = Path(path)
    if path.suffix == ".parquet":
        import pandas as pd

        texts = pd.read_parquet(path, columns=["text"])["text"].astype(str).tolist()
    else:
        texts = [line for line in path.read_text().splitlines() if line.strip()]
    return calibration_sample(texts, limit)


def describe(resolved: ResolvedModel, labels: dict[int, str]) -> dict[str, Any]:
    """The /info payload for a resolved model."""
    return {
        "model_uri": resolved.model_uri,
        "model_version": resolved.model_version,
        "run_id": resolved.run_id,
        "labels": {str(k): v for k, v in labels.items()},
        "data_version": resolved.data_version,
        "lineage": resolved.lineage,
    }
