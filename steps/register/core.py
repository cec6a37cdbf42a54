"""Register the best trial of an hpo search as a model version and gate the champion alias.

Order matters for "nothing registered on bad input": every lookup and the challenger's
evaluation happen before a version is created. A rerun for the same parent run finds the version
it made before (tag `parent_run_id` + source run) and reuses it and its evaluation.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from shared.mlflow_utils import connect
from shared.model_package import MLFLOW_MODEL_PATH
from shared.settings import Settings
from steps.register import registry, runs
from steps.register.contract import RegisterInput, RegisterResult
from steps.register.evaluate import EvalData, EvalMetrics, evaluate_model_dir, load_eval_split
from steps.register.gate import GateDecision, decide
from steps.register.promotion import promote
from steps.register.version_tags import description, evaluation_tags, hyperparameters, version_tags

log = logging.getLogger(__name__)


def _evaluate_uri(model_uri: str, data: EvalData) -> EvalMetrics:
    with tempfile.TemporaryDirectory(prefix="register-model-") as tmp:
        return evaluate_model_dir(registry.download_model_dir(model_uri, Path(tmp)), data)


def _challenger_metrics(client, existing, child_id: str, model_uri: str, data: EvalData, folder: str):
    """The challenger's metrics on `data`: reused from an earlier run of this step, else computed."""
    cached = registry.cached_metrics(existing, data.data_hash)
    if cached is not None:
        log.info("reusing the evaluation of version %s on this data", existing.version)
        return cached, existing.tags["evaluation_artifacts"]
    metrics = _evaluate_uri(model_uri, data)
    return metrics, registry.log_evaluation(client, child_id, metrics, folder, "eval")


def _gate(client, inp: RegisterInput, existing, challenger: EvalMetrics, data: EvalData, child_id, folder):
    """Decide on the champion alias; returns (decision, champion version, champion metrics)."""
    champion = registry.version_by_alias(client, inp.model_name, registry.CHAMPION_ALIAS)
    if champion is None:
        score = challenger.score(inp.metric)
        first = decide(score, None, tolerance=inp.promotion_tolerance, metric=inp.metric)
        return first, None, None
    if existing is not None and champion.version == existing.version:
        reason = f"version {existing.version} is already the champion"
        return GateDecision(True, reason), champion, challenger
    champ_metrics = registry.cached_metrics(champion, data.data_hash)
    if champ_metrics is None:
        champ_metrics = _evaluate_uri(f"models:/{inp.model_name}/{champion.version}", data)
        champ_folder = f"{folder}/champion-v{champion.version}"
        registry.log_evaluation(client, child_id, champ_metrics, champ_folder, "champion")
    decision = decide(
        challenger.score(inp.metric),
        champ_metrics.score(inp.metric),
        tolerance=inp.promotion_tolerance,
        metric=inp.metric,
        champion_version=champion.version,
    )
    return decision, champion, champ_metrics


def register(inp: RegisterInput, settings: Settings) -> RegisterResult:
    """Find the best child of the parent run, evaluate it, register it, gate the champion alias."""
    experiment_id = connect(settings)
    from mlflow import MlflowClient

    client = MlflowClient()
    if inp.parent_run_id:
        parent = runs.get_parent_run(client, inp.parent_run_id)
    else:
        parent = runs.find_parent_run_by_workflow(client, experiment_id, inp.workflow_uid or "")
    child = runs.find_best_child(client, parent)
    runs.require_model_artifact(client, child, MLFLOW_MODEL_PATH)
    parent_id, child_id = parent.info.run_id, child.info.run_id
    source_uri = f"runs:/{child_id}/{MLFLOW_MODEL_PATH}"
    log.info("parent run %s: best child run %s (%s)", parent_id, child_id, source_uri)

    data = load_eval_split(inp.dataset_dir, limit=inp.eval_limit)
    folder = f"evaluation/{data.split}-{data.data_hash[:12]}"
    existing = registry.find_version_for(client, inp.model_name, parent_id, child_id)
    challenger, eval_uri = _challenger_metrics(client, existing, child_id, source_uri, data, folder)
    decision, champion, champ_metrics = _gate(client, inp, existing, challenger, data, child_id, folder)
    log.info("gate: %s", decision.reason)

    tags = version_tags(parent, child, settings, model_artifact_uri=source_uri)
    tags.update(evaluation_tags(challenger, eval_uri))
    if existing is None:
        existing = registry.create_version(client, inp.model_name, source_uri, tags)
    version = str(existing.version)
    client.set_registered_model_alias(inp.model_name, registry.CHALLENGER_ALIAS, version)
    # Compare-and-set move of `champion`, re-gating if it moved; every decision recorded on the version.
    promotion = promote(
        client,
        inp.model_name,
        version,
        (decision, champion, champ_metrics),
        lambda: _gate(client, inp, existing, challenger, data, child_id, folder),
        challenger_metrics=challenger,
        metric=inp.metric,
        tolerance=inp.promotion_tolerance,
        workflow_uid=inp.workflow_uid or settings.argo_workflow_uid,
    )
    decision, champion, champ_metrics = promotion.decision, promotion.champion, promotion.champion_metrics
    gate_tags = {
        "gate_metric": inp.metric,
        "gate_tolerance": str(inp.promotion_tolerance),
        "gate_promoted": str(decision.promote).lower(),
        "gate_reason": decision.reason,
        "gate_champion_version": str(champion.version) if champion is not None else "",
    }
    for key, value in {**tags, **gate_tags}.items():
        if value == "":
            continue
        client.set_model_version_tag(inp.model_name, version, key, value)
    text = description(tags, hyperparameters(child), challenger, decision.reason)
    client.update_model_version(inp.model_name, version, description=text)
    client.set_tag(child_id, "registered_model_version", f"{inp.model_name}/{version}")

    return RegisterResult(
        model_name=inp.model_name,
        version=int(version),
        model_uri=f"models:/{inp.model_name}/{version}",
        promoted=promotion.promoted,
        reason=decision.reason,
        challenger_accuracy=challenger.accuracy,
        champion_version=int(champion.version) if champion is not None else None,
        champion_accuracy=champ_metrics.accuracy if champ_metrics is not None else None,
        metric=inp.metric,
        eval_split=data.split,
        parent_run_id=parent_id,
        source_run_id=child_id,
    )
