"""Lineage, evaluation and gate tags of a model version, read back by serving's `/info`
(the version's description, its model card, is built by `steps.register.model_card`).

The data/code lineage comes from the hpo parent run (tagged via `shared.lineage` when the model
was trained), falling back to the child run and then to this step's own settings.
"""

from __future__ import annotations

import json

from shared.lineage import code_version, lineage_tags
from shared.mlflow_contract import LINEAGE_TAGS, TRIAL_ID_TAG
from shared.settings import Settings
from steps.register.evaluate import EvalMetrics

MAX_TAG_CHARS = 5000  # model version tag values are limited in size by the MLflow stores


def _clip(value: str) -> str:
    return value if len(value) <= MAX_TAG_CHARS else value[: MAX_TAG_CHARS - 3] + "..."


def lineage_from_runs(parent, child, settings: Settings) -> dict[str, str]:
    """The training lineage: parent run tags, else child run tags, else this step's settings."""
    fallback = lineage_tags(settings)
    out = {}
    for key in LINEAGE_TAGS:
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
        "trial_id": child.data.tags.get(TRIAL_ID_TAG, ""),
        "source_model_uri": model_artifact_uri,
        "hyperparameters": _clip(json.dumps(hyperparameters(child), sort_keys=True)),
        **lineage_from_runs(parent, child, settings),
        "registered_by_argo_workflow_uid": settings.argo_workflow_uid,
        "registered_by_code_version": code_version(),
    }
    return {k: v for k, v in tags.items() if v != ""}


def evaluation_tags(metrics: EvalMetrics, artifact_uri: str) -> dict[str, str]:
    tags = {
        "eval_split": metrics.split,
        "eval_rows": str(metrics.rows),
        "eval_data_hash": metrics.data_hash,
        "eval_accuracy": f"{metrics.accuracy:.6f}",
        "eval_f1_macro": f"{metrics.f1_macro:.6f}",
        "evaluation_artifacts": artifact_uri,
    }
    if metrics.calibration is not None:
        tags["temperature"] = f"{metrics.calibration.temperature:.6f}"
        tags["eval_ece_before"] = f"{metrics.calibration.ece_before:.6f}"
        tags["eval_ece_after"] = f"{metrics.calibration.ece_after:.6f}"
    return tags


def gate_tags(record: dict, tolerances: dict[str, float]) -> dict[str, str]:
    """The gate's decision as version tags: metrics, tolerances, outcome, per-class recall."""
    recall = record.get("per_class_recall") or {}
    tags = {
        "gate_metrics": ",".join(tolerances),
        **{f"gate_{metric}_tolerance": str(tol) for metric, tol in tolerances.items()},
        "gate_promoted": str(record["promoted"]).lower(),
        "gate_reason": _clip(record["reason"]),
        "gate_champion_version": record.get("champion_version") or "",
        "gate_recall_challenger": json.dumps(recall.get("challenger"), sort_keys=True)
        if recall.get("challenger")
        else "",
        "gate_recall_champion": json.dumps(recall.get("champion"), sort_keys=True)
        if recall.get("champion")
        else "",
    }
    return tags
