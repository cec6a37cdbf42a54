"""Fail fast before any trial starts; the `result` command; the CLI contract."""

from __future__ import annotations

import json

import pytest

from shared.errors import StepError, TransientError
from shared.settings import Settings
from steps.hpo.cli import main
from steps.hpo.contract import HpoInput, HpoResult
from steps.hpo.core import find_result, run_search
from tests.cli_helpers import run_main


def _no_runs(settings: Settings) -> bool:
    import mlflow

    return mlflow.search_runs(experiment_names=[settings.mlflow_experiment_name]).empty


def test_missing_tokenized_files_fail_before_ray_and_mlflow(tmp_path, mlflow_settings):
    import ray

    with pytest.raises(StepError, match="does not exist"):
        run_search(HpoInput(tokenized_dir=tmp_path / "missing"), mlflow_settings)
    assert not ray.is_initialized()


def test_bad_search_space_fails_naming_the_entry(tokenized_dir, tmp_path, mlflow_settings):
    space = tmp_path / "space.yaml"
    space.write_text("weight_decay: {distribution: normal, low: 0, high: 1}\n")
    with pytest.raises(StepError, match="'weight_decay'.*normal"):
        run_search(HpoInput(tokenized_dir=tokenized_dir, search_space=space), mlflow_settings)


def test_unreachable_mlflow_fails_fast(tokenized_dir, tiny_base_model):
    settings = Settings(mlflow_tracking_uri="http://127.0.0.1:9")
    with pytest.raises(TransientError, match="127.0.0.1:9 is unreachable"):
        run_search(HpoInput(tokenized_dir=tokenized_dir, model=str(tiny_base_model)), settings)


def test_unreachable_ray_address_fails_fast(tokenized_dir, tiny_base_model, mlflow_settings):
    inp = HpoInput(tokenized_dir=tokenized_dir, model=str(tiny_base_model), ray_address="127.0.0.1:9")
    with pytest.raises(TransientError, match="Ray cluster at 127.0.0.1:9 is unreachable"):
        run_search(inp, mlflow_settings)
    assert _no_runs(mlflow_settings)


def test_unknown_model_fails_fast(tokenized_dir, mlflow_settings, tmp_path):
    (tmp_path / "m").mkdir()
    with pytest.raises(StepError, match="config.json"):
        run_search(HpoInput(tokenized_dir=tokenized_dir, model=str(tmp_path / "m")), mlflow_settings)


@pytest.mark.slow
def test_more_gpus_than_the_cluster_has_fails_before_any_trial(
    tokenized_dir, tiny_base_model, tmp_path, mlflow_settings
):
    import ray

    inp = HpoInput(
        tokenized_dir=tokenized_dir,
        model=str(tiny_base_model),
        gpus_per_trial=0.5,
        ray_num_cpus=1,
        storage_dir=tmp_path / "tune",
    )
    with pytest.raises(StepError, match="--gpus-per-trial 0.5 exceeds the Ray cluster's 0 GPU"):
        run_search(inp, mlflow_settings)
    assert not ray.is_initialized()
    assert _no_runs(mlflow_settings)


def test_result_command_recovers_the_newest_finished_search(mlflow_settings, tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    from shared.mlflow_utils import connect

    experiment_id = connect(mlflow_settings)
    client = MlflowClient()
    for i, status in enumerate(("FINISHED", "FINISHED", "FAILED")):
        run = client.create_run(
            experiment_id, tags={"argo_workflow_uid": "wf-1", "hpo_role": "parent"}, start_time=1000 + i
        )
        rid = run.info.run_id
        for key, value in {
            "best_run_id": f"child-{i}",
            "best_trial_id": f"t_{i}",
            "best_config": json.dumps({"learning_rate": 1e-5 * (i + 1)}),
            "model_uri": f"runs:/child-{i}/model",
        }.items():
            client.set_tag(rid, key, value)
        client.log_metric(rid, "best_val_loss", 0.5 - i / 10)
        client.log_metric(rid, "best_val_accuracy", 0.8 + i / 100)
        client.set_terminated(rid, status=status)

    result_dir = tmp_path / "result"
    code, out = run_main(main, ["result", "--workflow-uid", "wf-1", "--result-dir", str(result_dir)], capsys)
    assert code == 0, out
    result = HpoResult.model_validate_json((result_dir / "result.json").read_text())
    assert result.best_run_id == "child-1"  # the newest FINISHED one, not the failed one
    assert result.best_config == {"learning_rate": 2e-5}
    assert (result_dir / "model-uri").read_text() == "runs:/child-1/model"
    with pytest.raises(StepError, match="wf-unknown"):
        find_result("wf-unknown", mlflow_settings)


def test_cli_bad_input_exits_2_with_the_problem(tmp_path, mlflow_settings, capsys):
    argv = ["--tokenized-dir", str(tmp_path / "nope"), "--result-dir", str(tmp_path)]
    code, out = run_main(main, argv, capsys)
    assert code == 2 and "nope" in out and "Traceback" not in out
    code, out = run_main(main, ["--tokenized-dir", str(tmp_path), "--num-samples", "0"], capsys)
    assert code == 2 and "--num-samples: Input should be greater than or equal to 1" in out
    code, out = run_main(main, ["--tokenized-dir", str(tmp_path), "--num-epochs", "2"], capsys)
    assert code == 2 and "--num-epochs" in out  # renamed to --max-epochs: an unknown flag is bad input
    assert not (tmp_path / "result.json").exists()


def test_trial_id_comes_from_metrics_or_the_trial_directory():
    from types import SimpleNamespace

    from steps.hpo.core import _trial_id

    path = "/s/hpo-1/run_trial_648f3_00001_1_batch_size=32,learning_rate=0.0000_2026-11-26_15-38-14"
    assert _trial_id(SimpleNamespace(metrics={"trial_id": "abcde_00007"}, path=path)) == "abcde_00007"
    assert _trial_id(SimpleNamespace(metrics={}, path=path)) == "648f3_00001"
    assert _trial_id(SimpleNamespace(metrics=None, path="/s/elsewhere")) is None
