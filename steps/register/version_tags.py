"""Lineage tags and the description of a model version, read back by serving's `/info`.

The data/code lineage comes from the hpo parent run (tagged via `shared.lineage` when the model
was trained), falling back to the child run and then to this step's own settings.
"""

from __future__ import annotations

import json

from shared.lineage import code_version, lineage_tags
from shared.settings import Settings
from steps.register.evaluate import EvalMetrics

LINEAGE_KEYS = (
    "argo_workflow_uid",
    "docker_image_tag",
    "dvc_data_version",
    "code_version",
    "dataset_hash",
    "dvc_registry_url",
)
MAX_TAG_CHARS = 5000  # model version tag values are limited in size by the MLflow stores


def _clip(value: str) -> str:
    return value if len(value) <= MAX_TAG_CHARS else value[: MAX_TAG_CHARS - 3] + "..."


def lineage_from_runs(parent, child, settings: Settings) -> dict[str, str]:
    """The training lineage: parent run tags, else child run tags, else this step's settings."""
    fallback = lineage_tags(settings)
    out = {}
    for key in LINEAGE_KEYS:
        value = parent.data.tags.get(key) or child.data.tags.get(key) or fallback.get(key)
        if value:
            out[key] = str(value)
    return out


def hyperparameters(child) -> dict[str, str]:
    return dict(sorted(child.data.params.items()))


def version_tags(parent, child, settings: Settings, *, model_artifact_uri: str) -> dict[str, str]:
    """Tags tying a model version to its runs, trial, hyperparameters, data, code and workflow."""
    tags = {
        "source_run_id": child.info.run_id,
        "parent_run_id": parent.info.run_id,
        "trial_id": child.data.tags.get("trial_id", ""),
        "source_model_uri": model_artifact_uri,
        "hyperparameters": _clip(json.dumps(hyperparameters(child), sort_keys=True)),
        **lineage_from_runs(parent, child, settings),
        "registered_by_argo_workflow_uid": settings.argo_workflow_uid,
        "registered_by_code_version": code_version(),
    }
    return {k: v for k, v in tags.items() if v != ""}


def evaluation_tags(metrics: EvalMetrics, artifact_uri: str) -> dict[str, str]:
    return {
        "eval_split": metrics.split,
        "eval_rows": str(metrics.rows),
        "eval_data_hash": metrics.data_hash,
        "eval_accuracy": f"{metrics.accuracy:.6f}",
        "eval_f1_macro": f"{metrics.f1_macro:.6f}",
        "evaluation_artifacts": artifact_uri,
    }


def description(tags: dict[str, str], hparams: dict[str, str], metrics: EvalMetrics, reason: str) -> str:
    """A human-readable summary shown in the MLflow UI next to the version."""
    hp_text = ", ".join(f"{k}={v}" for k, v in hparams.items()) or "n/a"
    return "\n".join(
        [
            f"Emotion classifier from hpo parent run {tags['parent_run_id']}, "
            f"trial {tags.get('trial_id', 'n/a')} (child run {tags['source_run_id']}).",
            f"Data: {tags.get('dvc_data_version', 'n/a')} (dataset hash {tags.get('dataset_hash', 'n/a')}) "
            f"from {tags.get('dvc_registry_url', 'n/a')}.",
            f"Code: commit {tags.get('code_version', 'n/a')}, "
            f"image tag {tags.get('docker_image_tag', 'n/a')}, "
            f"Argo workflow {tags.get('argo_workflow_uid', 'n/a')}.",
            f"Hyperparameters: {hp_text}.",
            f"Evaluation on {metrics.split} ({metrics.rows} rows): accuracy {metrics.accuracy:.4f}, "
            f"macro-F1 {metrics.f1_macro:.4f}.",
            f"Gate: {reason}",
        ]
    )
