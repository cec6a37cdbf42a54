"""Register the best trial of an hpo search as a model version and gate the champion alias.

Order matters for "nothing registered on bad input": every lookup and the challenger's
evaluation happen before a version is created. A rerun for the same parent run finds the version
it made before (tag `parent_run_id` + source run) and reuses it and its evaluation.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

from shared.mlflow_utils import connect
from shared.model_package import MLFLOW_MODEL_PATH
from shared.progress import NO_PROGRESS, Progress
from shared.settings import Settings
from steps.register import registry, runs
from steps.register.contract import RegisterInput, RegisterResult
from steps.register.evaluate import EvalData, EvalMetrics, evaluate_model_dir, load_eval_split
from steps.register.gate import GATE_METRICS, GateDecision, decide, decision_record
from steps.register.model_card import CardInputs, description, model_card
from steps.register.promotion import promote
from steps.register.version_tags import evaluation_tags, gate_tags, hyperparameters, version_tags

log = logging.getLogger(__name__)


def _evaluate_uri(model_uri: str, data: EvalData, progress: Progress = NO_PROGRESS) -> EvalMetrics:
    progress.set_total(progress.total + len(data.texts))  # rows to evaluate, per model evaluated
    with tempfile.TemporaryDirectory(prefix="register-model-") as tmp:
        return evaluate_model_dir(registry.download_model_dir(model_uri, Path(tmp)), data, progress.advance)


def _evaluate_served(
    client, child_id: str, model_uri: str, data: EvalData, dataset_dir: Path, progress: Progress = NO_PROGRESS
):
    """Build the serving artifact once, score *it* on `data`, log it to the child run (serving.export)."""
    from serving.export import build_evaluate_and_log

    logged: dict[str, str] = {}

    def predict_served(model_dir: Path, texts: list[str]) -> list[str]:
        progress.status(f"building and evaluating the serving artifact of {model_uri}")
        predicted, logged["uri"] = build_evaluate_and_log(client, child_id, model_dir, texts, dataset_dir)
        return predicted

    progress.set_total(progress.total + len(data.texts))
    with tempfile.TemporaryDirectory(prefix="register-model-") as tmp:
        model_dir = registry.download_model_dir(model_uri, Path(tmp))
        metrics = evaluate_model_dir(model_dir, data, progress.advance, predict=predict_served)
    return metrics, logged["uri"]


def _challenger_metrics(
    client, existing, child_id: str, model_uri: str, data: EvalData, folder: str, dataset_dir, progress
):
    """The challenger's metrics on `data` and its serving artifact: reused from an earlier run, else built."""
    cached = registry.cached_metrics(existing, data.data_hash)
    if cached is not None:
        log.info("reusing the evaluation of version %s on this data", existing.version)
        return cached, existing.tags["evaluation_artifacts"], None
    progress.status(f"evaluating the challenger {model_uri} on {data.split} ({len(data.texts)} rows)")
    metrics, artifact_uri = _evaluate_served(client, child_id, model_uri, data, dataset_dir, progress)
    return metrics, registry.log_evaluation(client, child_id, metrics, folder, "eval"), artifact_uri


def _scores(metrics: EvalMetrics) -> dict[str, float]:
    return {m: metrics.score(m) for m in GATE_METRICS}


def _gate(
    client, inp: RegisterInput, existing, challenger: EvalMetrics, data: EvalData, child_id, folder, progress
):
    """Decide on the champion alias; returns (decision, champion version, champion metrics)."""
    champion = registry.version_by_alias(client, inp.model_name, registry.CHAMPION_ALIAS)
    if champion is None:
        return decide(_scores(challenger), None, tolerances=inp.tolerances), None, None
    if existing is not None and champion.version == existing.version:
        reason = f"version {existing.version} is already the champion"
        return GateDecision(True, reason), champion, challenger
    champ_metrics = registry.cached_metrics(champion, data.data_hash)
    if champ_metrics is None:
        progress.status(f"evaluating the champion, version {champion.version}, on {data.split}")
        champ_metrics = _evaluate_uri(f"models:/{inp.model_name}/{champion.version}", data, progress)
        champ_folder = f"{folder}/champion-v{champion.version}"
        registry.log_evaluation(client, child_id, champ_metrics, champ_folder, "champion")
    decision = decide(
        _scores(challenger),
        _scores(champ_metrics),
        tolerances=inp.tolerances,
        champion_version=champion.version,
    )
    return decision, champion, champ_metrics


def _log_decision(client, run_id: str, folder: str, record: dict, card: str) -> None:
    """The gate's decision record (`gate_decision.json`) and the full model card (`model_card.md`)."""
    with tempfile.TemporaryDirectory(prefix="register-card-") as tmp:
        (Path(tmp) / "gate_decision.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        (Path(tmp) / "model_card.md").write_text(card)
        client.log_artifacts(run_id, tmp, folder)


def register(inp: RegisterInput, settings: Settings, progress: Progress = NO_PROGRESS) -> RegisterResult:
    """Find the best child of the parent run, evaluate it, register it, gate the champion alias.

    `progress`: rows evaluated, out of the rows of every evaluation this run needs."""
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
    challenger, eval_uri, serving_uri = _challenger_metrics(
        client, existing, child_id, source_uri, data, folder, inp.dataset_dir, progress
    )
    decision, champion, champ_metrics = _gate(
        client, inp, existing, challenger, data, child_id, folder, progress
    )
    log.info("gate: %s", decision.reason)

    tags = version_tags(parent, child, settings, model_artifact_uri=source_uri)
    tags.update(evaluation_tags(challenger, eval_uri))
    if serving_uri:
        from serving.export import SERVING_ARTIFACT_TAG

        tags[SERVING_ARTIFACT_TAG] = serving_uri
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
        lambda: _gate(client, inp, existing, challenger, data, child_id, folder, progress),
        challenger_metrics=challenger,
        metric=",".join(GATE_METRICS),
        tolerance=dict(inp.tolerances),
        workflow_uid=inp.workflow_uid or settings.argo_workflow_uid,
    )
    decision, champion, champ_metrics = promotion.decision, promotion.champion, promotion.champion_metrics
    champion_version = champion.version if champion is not None else None
    record = decision_record(decision, challenger, champ_metrics, champion_version=champion_version)
    for key, value in {**tags, **gate_tags(record, inp.tolerances)}.items():
        if value == "":
            continue
        client.set_model_version_tag(inp.model_name, version, key, value)
    card = CardInputs(
        model_name=inp.model_name,
        version=version,
        tags=tags,
        hyperparameters=hyperparameters(child),
        parent_params=dict(parent.data.params),
        parent_metrics=dict(parent.data.metrics),
        metrics=challenger,
        decision=record,
        report_uri=eval_uri,
    )
    _log_decision(client, child_id, folder, record, model_card(card))
    client.update_model_version(inp.model_name, version, description=description(card))
    client.set_tag(child_id, "registered_model_version", f"{inp.model_name}/{version}")
    progress.status(f"version {version}: {decision.reason}")
    progress.finish()

    calibration = challenger.calibration
    return RegisterResult(
        model_name=inp.model_name,
        version=int(version),
        model_uri=f"models:/{inp.model_name}/{version}",
        promoted=promotion.promoted,
        reason=decision.reason,
        challenger_accuracy=challenger.accuracy,
        challenger_f1_macro=challenger.f1_macro,
        champion_version=int(champion.version) if champion is not None else None,
        champion_accuracy=champ_metrics.accuracy if champ_metrics is not None else None,
        champion_f1_macro=champ_metrics.f1_macro if champ_metrics is not None else None,
        temperature=calibration.temperature if calibration is not None else 1.0,
        ece_before=calibration.ece_before if calibration is not None else None,
        ece_after=calibration.ece_after if calibration is not None else None,
        eval_split=data.split,
        parent_run_id=parent_id,
        source_run_id=child_id,
    )
