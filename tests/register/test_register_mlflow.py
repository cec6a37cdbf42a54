"""The register step against a real `mlflow server` on 127.0.0.1, with hpo-like runs built here."""

from __future__ import annotations

import json
import re

import pytest

from shared.errors import StepError
from steps.register.core import RegisterInput, register
from steps.register.evaluate import load_eval_split

from .helpers import Trial, unique_model_name

pytestmark = pytest.mark.slow
LIMIT = 300


def _share(dataset_dir, label: str, limit: int) -> float:
    """Accuracy of a model that always answers `label` on the eval sample."""
    data = load_eval_split(dataset_dir, limit=limit)
    return data.labels.count(label) / len(data.labels)


def _client():
    from mlflow import MlflowClient

    return MlflowClient()


def _versions(name: str) -> list[str]:
    return sorted(v.version for v in _client().search_model_versions(f"name = '{name}'"))


def _alias(name: str, alias: str) -> str:
    return _client().get_model_version_by_alias(name, alias).version


def test_gate_promotes_a_better_challenger_and_keeps_the_champion_against_a_worse_one(
    make_search, constant_model_dirs, register_settings, dataset_dir
):
    name = unique_model_name("gate")
    models = constant_model_dirs

    def run(search, limit=LIMIT, tolerance=0.005):
        inp = RegisterInput(
            parent_run_id=search.parent_run_id,
            dataset_dir=dataset_dir,
            model_name=name,
            accuracy_tolerance=tolerance,
            f1_macro_tolerance=tolerance,
            eval_limit=limit,
        )
        return register(inp, register_settings)

    # the first-ever model becomes champion; the best FINISHED child wins (KILLED ones do not count)
    first = make_search([Trial(models["surprise"], 0.9), Trial(None, 1.2), Trial(None, 0.1, status="KILLED")])
    r1 = run(first)
    assert (r1.version, r1.promoted, r1.champion_version) == (1, True, None)
    assert r1.source_run_id == first.child_run_ids[0] and "no champion" in r1.reason
    assert r1.challenger_accuracy == pytest.approx(_share(dataset_dir, "surprise", LIMIT))
    assert r1.model_uri == f"models:/{name}/1" and r1.eval_split == "validation"

    # a better challenger (hpo named its best run) replaces it
    better = make_search([Trial(models["surprise"], 0.5), Trial(models["joy"], 0.7)], best=1)
    r2 = run(better)
    assert (r2.version, r2.promoted, r2.champion_version) == (2, True, 1)
    assert r2.challenger_accuracy == pytest.approx(_share(dataset_dir, "joy", LIMIT))
    assert r2.champion_accuracy == pytest.approx(r1.challenger_accuracy)
    assert r2.challenger_accuracy > r2.champion_accuracy
    assert (_alias(name, "champion"), _alias(name, "challenger")) == ("2", "2")

    # a worse one is registered as challenger but the champion stays; on other data the champion
    # is evaluated afresh on exactly the challenger's sample
    worse = make_search([Trial(models["sadness"], 0.4)])
    joy, sadness = _share(dataset_dir, "joy", 400), _share(dataset_dir, "sadness", 400)
    assert 0.005 < joy - sadness < 0.2  # the margins the two tolerances below rely on
    r3 = run(worse, limit=400, tolerance=0.005)
    assert (r3.version, r3.promoted, r3.champion_version) == (3, False, 2)
    assert r3.champion_accuracy == pytest.approx(joy) and r3.challenger_accuracy == pytest.approx(sadness)
    assert "not promoted" in r3.reason and "worse by more than tolerance 0.005" in r3.reason
    assert (_alias(name, "champion"), _alias(name, "challenger")) == ("2", "3")
    tags = _client().get_model_version(name, "3").tags
    assert tags["gate_promoted"] == "false" and tags["gate_champion_version"] == "2"
    assert tags["gate_metrics"] == "accuracy,f1_macro" and tags["gate_f1_macro_tolerance"] == "0.005"
    # the decision record has both models' per-class recall: a constant model recalls one class
    assert json.loads(tags["gate_recall_challenger"])["sadness"] == 1.0
    assert json.loads(tags["gate_recall_champion"]) == {
        "sadness": 0.0,
        "joy": 1.0,
        "love": 0.0,
        "anger": 0.0,
        "fear": 0.0,
        "surprise": 0.0,
    }
    import mlflow

    record = json.loads(mlflow.artifacts.load_text(tags["evaluation_artifacts"] + "/gate_decision.json"))
    assert [c["metric"] for c in record["checks"]] == ["accuracy", "f1_macro"] and not record["promoted"]
    assert record["per_class_recall"]["delta"]["joy"] == -1.0

    # the same parent again with a looser tolerance: the same version, now promoted
    r4 = run(worse, limit=400, tolerance=0.2)
    assert (r4.version, r4.promoted, r4.champion_version) == (3, True, 2)
    assert _versions(name) == ["1", "2", "3"]
    assert _alias(name, "champion") == "3"


def test_rerun_reuses_the_version_and_the_version_carries_lineage(
    make_search, constant_model_dirs, register_settings, dataset_dir
):
    name = unique_model_name("lineage")
    params = {"learning_rate": "3e-05", "batch_size": "32", "weight_decay": "0.01"}
    search = make_search(
        [Trial(None, 0.8), Trial(constant_model_dirs["joy"], 0.6, params=params)],
        best=1,
        workflow_uid="wf-hpo-lineage",
        dataset_hash="d5e7a11",
    )
    inp = RegisterInput(
        parent_run_id=search.parent_run_id, dataset_dir=dataset_dir, model_name=name, eval_limit=100
    )
    first = register(inp, register_settings)
    again = register(inp, register_settings)
    assert first.version == again.version == 1 and _versions(name) == ["1"]
    assert again.promoted and "already the champion" in again.reason
    assert again.challenger_accuracy == first.challenger_accuracy

    client = _client()
    child = search.child_run_ids[1]
    version = client.get_model_version(name, "1")
    tags = version.tags
    assert version.run_id == child
    assert tags["source_run_id"] == child and tags["parent_run_id"] == search.parent_run_id
    assert tags["trial_id"] == "t001"
    assert json.loads(tags["hyperparameters"]) == params
    assert tags["argo_workflow_uid"] == "wf-hpo-lineage"  # the workflow that trained it
    assert tags["registered_by_argo_workflow_uid"] == "wf-register-step"
    assert tags["docker_image_tag"] == "hpo-image-1.2.3"
    assert (tags["dataset_hash"], tags["dvc_registry_url"]) == ("d5e7a11", "/srv/data-registry")
    assert tags["dvc_data_version"] == "emotion-v1.0.0"
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", tags["code_version"]), tags["code_version"]
    assert float(tags["eval_accuracy"]) == pytest.approx(first.challenger_accuracy, abs=1e-6)
    for needle in (search.parent_run_id, child, "t001", "learning_rate=3e-05", "d5e7a11", "wf-hpo-lineage"):
        assert needle in version.description
    # the description is the model card (Markdown)
    for heading in (
        "## Data",
        "## Metrics on validation",
        "## Calibration",
        "## Confusion matrix",
        "## Known limitations",
    ):
        assert heading in version.description
    assert "English tweets" in version.description and len(version.description) <= 5000

    # evaluation report on the version's run, linked from the version, logged once
    folder = tags["evaluation_artifacts"].split(f"runs:/{child}/", 1)[1]
    assert [a.path for a in client.list_artifacts(child, "evaluation")] == [folder]
    files = {a.path.rsplit("/", 1)[1] for a in client.list_artifacts(child, folder)}
    assert {
        "metrics.json",
        "per_class.csv",
        "confusion_matrix.png",
        "model_card.md",
        "gate_decision.json",
    } <= files
    child_run = client.get_run(child)
    assert child_run.data.metrics["eval_accuracy"] == pytest.approx(first.challenger_accuracy)
    assert child_run.data.tags["registered_model_version"] == f"{name}/1"


def test_registered_model_loads_as_pyfunc_and_as_safetensors(
    make_search, constant_model_dirs, register_settings, dataset_dir, tmp_path
):
    import mlflow

    from shared.model_package import load_model_dir, model_dir_from_mlflow

    name = unique_model_name("load")
    search = make_search([Trial(constant_model_dirs["sadness"], 0.3)])
    inp = RegisterInput(
        parent_run_id=search.parent_run_id, dataset_dir=dataset_dir, model_name=name, eval_limit=50
    )
    result = register(inp, register_settings)

    out = mlflow.pyfunc.load_model(f"models:/{name}@champion").predict(["i am furious", "what a lovely day"])
    assert list(out["emotion"]) == ["sadness", "sadness"]
    local = mlflow.artifacts.download_artifacts(result.model_uri, dst_path=str(tmp_path))
    model_dir = model_dir_from_mlflow(local)
    assert (model_dir / "model.safetensors").is_file() and not list(model_dir.rglob("*.bin"))
    model, tokenizer, labels = load_model_dir(model_dir)
    assert labels[0] == "sadness" and model.config.num_labels == 6


def test_cli_finds_the_newest_parent_of_a_workflow_and_writes_result_files(
    make_search, constant_model_dirs, register_settings, dataset_dir, tmp_path, monkeypatch, capsys
):
    from steps.register.cli import main
    from tests.cli_helpers import run_main

    name = unique_model_name("cli")
    make_search([Trial(constant_model_dirs["surprise"], 0.3)], workflow_uid="wf-cli")
    newest = make_search([Trial(constant_model_dirs["joy"], 0.3)], workflow_uid="wf-cli")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", register_settings.mlflow_tracking_uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", register_settings.mlflow_experiment_name)
    args = ["--workflow-uid", "wf-cli", "--dataset-dir", str(dataset_dir), "--model-name", name]
    args += ["--eval-limit", "60", "--f1-macro-tolerance", "0.02", "--result-dir", str(tmp_path)]
    code, out = run_main(main, args, capsys)
    assert code == 0, out
    data = json.loads((tmp_path / "result.json").read_text())
    assert data["parent_run_id"] == newest.parent_run_id and data["source_run_id"] == newest.child_run_ids[0]
    assert "f1_macro" in data["reason"] and 0 < data["challenger_f1_macro"] < 1
    assert (tmp_path / "temperature").read_text() == "1.0"  # no temperature.json: uncalibrated
    assert (tmp_path / "promoted").read_text() == "true"
    assert (tmp_path / "version").read_text() == "1"
    assert (tmp_path / "model-uri").read_text() == f"models:/{name}/1"

    code, out = run_main(main, ["--workflow-uid", "wf-none", "--dataset-dir", str(dataset_dir)], capsys)
    assert code == 2 and "no parent run tagged argo_workflow_uid=wf-none" in out


def test_bad_runs_are_clear_errors_and_register_nothing(
    make_search, constant_model_dirs, register_settings, dataset_dir
):
    name = unique_model_name("bad")

    def attempt(parent_run_id):
        inp = RegisterInput(
            parent_run_id=parent_run_id, dataset_dir=dataset_dir, model_name=name, eval_limit=20
        )
        return register(inp, register_settings)

    with pytest.raises(StepError, match="parent run '0{32}' not found"):
        attempt("0" * 32)
    failed_only = make_search([Trial(constant_model_dirs["joy"], 0.2, status="FAILED")])
    with pytest.raises(StepError, match="no FINISHED child run .*FAILED"):
        attempt(failed_only.parent_run_id)
    no_model = make_search([Trial(constant_model_dirs["joy"], 0.9), Trial(None, 0.2)])
    with pytest.raises(StepError, match=f"best child run {no_model.child_run_ids[1]} has no model artifact"):
        attempt(no_model.parent_run_id)
    with pytest.raises(StepError, match="is a child run"):
        attempt(no_model.child_run_ids[0])
    assert list(_client().search_registered_models(filter_string=f"name = '{name}'")) == []
