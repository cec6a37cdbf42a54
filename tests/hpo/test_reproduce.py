"""`python -m steps.hpo reproduce`: one trial trained again from its MLflow child run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from shared.errors import StepError, TransientError
from shared.mlflow_contract import (
    DATA_VERSION_TAG,
    REGISTRY_URL_TAG,
    TOKENIZE_PARAM_PREFIX,
    TUNE_SHA256_PARAM,
)
from shared.settings import Settings
from steps.hpo.reproduce import CACHE_SUBDIR, rebuild_data
from steps.tokenize.core import RECORDED_INPUTS
from tests.hpo.driver import ROOT, step_env

# What a search on the pipeline's data records (the values do not matter to the errors tested).
RECORDED_PARAMS = {
    TUNE_SHA256_PARAM: "0" * 64,
    **{TOKENIZE_PARAM_PREFIX + name: "1" for name in RECORDED_INPUTS},
}


def _reproduce(env, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "steps.hpo", "reproduce", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def test_the_tokenize_manifest_records_every_input_that_made_the_data(dataset_dir, tiny_base_model, tmp_path):
    """What hpo records on its parent run (tokenize_* params) is every tokenize input, as given."""
    from steps.tokenize import TokenizeInput, tokenize
    from steps.tokenize.core import MANIFEST_FILE, manifest_inputs

    inp = TokenizeInput(
        dataset_dir=dataset_dir, output_dir=tmp_path / "tok", model=str(tiny_base_model), max_length=32,
        limit=50, eval_limit=20, seed=3, tune_fraction=0.2, batch_size=64,
    )  # fmt: skip
    tokenize(inp)
    manifest = json.loads((tmp_path / "tok" / MANIFEST_FILE).read_text())
    assert manifest_inputs(manifest) == inp.model_dump(exclude={"dataset_dir", "output_dir"})
    unlimited = manifest_inputs({**manifest, "limit": None, "eval_limit": None})
    assert unlimited["limit"] == unlimited["eval_limit"] == 0 and set(unlimited) == set(RECORDED_INPUTS)


def test_a_run_without_data_lineage_names_what_is_missing_and_the_shortcut(tmp_path):
    params = dict(RECORDED_PARAMS)
    del params[TOKENIZE_PARAM_PREFIX + "max_length"]
    with pytest.raises(StepError) as err:
        rebuild_data("run-1", {DATA_VERSION_TAG: "emotion-v1.0.0"}, params, Settings(local_dir=tmp_path))
    message = str(err.value)
    assert f"tag {REGISTRY_URL_TAG}" in message and f"param {TOKENIZE_PARAM_PREFIX}max_length" in message
    assert DATA_VERSION_TAG not in message and "--tokenized-dir" in message
    assert not (tmp_path / CACHE_SUBDIR).exists()


@pytest.mark.parametrize(
    ("registry_url", "error"),
    [("{tmp}/no-such-registry", StepError), ("https://127.0.0.1:9/data-registry.git", TransientError)],
    ids=["missing-bad-input", "refused-transient"],
)
def test_an_unreachable_recorded_registry_is_bad_input_or_transient(registry_url, error, tmp_path):
    tags = {REGISTRY_URL_TAG: registry_url.format(tmp=tmp_path), DATA_VERSION_TAG: "emotion-v1.0.0"}
    with pytest.raises(error) as err:
        rebuild_data("run-1", tags, RECORDED_PARAMS, Settings(local_dir=tmp_path / "local"))
    assert type(err.value) is error  # exit 2 for a registry that is not there, 75 for one down now
    assert "--run-id run-1" in str(err.value) and REGISTRY_URL_TAG in str(err.value)
    assert not list((tmp_path / "local").rglob("*.parquet")), "nothing half-written is left"


@pytest.fixture(scope="module")
def pipeline_data(dataset_dir, tiny_base_model, tmp_path_factory):
    """A registry holding the test dataset, and the dvc-fetch + tokenize steps' output of it."""
    from shared.data_registry.build import BuildInput, build
    from steps.dvc_fetch.contract import FetchInput
    from steps.dvc_fetch.core import fetch
    from steps.tokenize import TokenizeInput, tokenize

    root = tmp_path_factory.mktemp("reproduce-data")
    built = build(BuildInput(source=dataset_dir, registry=root / "data-registry"))
    fetched = fetch(
        FetchInput(registry_url=built.registry, data_version=built.version, output_dir=root / "ds")
    )
    tokenize(
        TokenizeInput(
            dataset_dir=root / "ds", output_dir=root / "tokenized", model=str(tiny_base_model),
            max_length=64, limit=200, eval_limit=60, seed=4,
        )
    )  # fmt: skip
    return fetched, root / "tokenized"


@pytest.mark.slow
def test_reproduce_from_the_child_run_alone_matches_a_finished_trial(
    pipeline_data, tokenized_dir, tiny_base_model, tmp_path
):
    from mlflow.tracking import MlflowClient

    fetched, tokenized = pipeline_data
    env = {
        **step_env(f"sqlite:///{tmp_path / 'mlflow.db'}", "reproduce"),
        "EMOTION_LOCAL_DIR": str(tmp_path / "local"),
    }
    search = subprocess.run(
        [sys.executable, "-m", "steps.hpo", "--tokenized-dir", str(tokenized),
         "--model", str(tiny_base_model),
         "--num-samples", "1", "--max-epochs", "2", "--limit", "120", "--cpus-per-trial", "1",
         "--ray-num-cpus", "1", "--torch-threads", "1", "--seed", "11",
         "--data-version", fetched.data_version, "--registry-url", fetched.registry_url,
         "--dataset-hash", fetched.dataset_hash,
         "--storage-dir", str(tmp_path / "hpo"), "--result-dir", str(tmp_path / "search")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert search.returncode == 0, search.stderr[-3000:]
    run_id = (tmp_path / "search" / "best-run-id").read_text()
    recorded = MlflowClient(env["MLFLOW_TRACKING_URI"]).get_metric_history(run_id, "val_loss")

    # the run alone: its data fetched from the registry it names and tokenized again, then trained
    again = _reproduce(env, "--run-id", run_id, "--result-dir", str(tmp_path / "reproduced"))
    assert again.returncode == 0, again.stderr[-3000:]
    result = json.loads((tmp_path / "reproduced" / "result.json").read_text())
    assert result["epochs"] == len(recorded) == 2
    assert result["matches"], result["per_epoch"]
    assert "epoch 2:" in again.stdout
    rebuilt = tmp_path / "local" / CACHE_SUBDIR
    assert result["tokenized_dir"].startswith(str(rebuilt))
    assert list(rebuilt.glob("*/tune.parquet")), "the rebuilt data is cached under the local state folder"

    # the shortcut: the tokenized data given, its tune split checked against the recorded hash
    shortcut = _reproduce(
        env, "--run-id", run_id, "--tokenized-dir", str(tokenized), "--result-dir", str(tmp_path / "short")
    )
    assert shortcut.returncode == 0, shortcut.stderr[-3000:]
    assert json.loads((tmp_path / "short" / "result.json").read_text())["matches"]
    other_data = _reproduce(env, "--run-id", run_id, "--tokenized-dir", str(tokenized_dir), timeout=300)
    assert other_data.returncode == 2 and "not the data the search read" in other_data.stderr

    not_a_trial = _reproduce(env, "--run-id", "0" * 32, timeout=300)
    assert not_a_trial.returncode == 2 and "--run-id" in not_a_trial.stderr
