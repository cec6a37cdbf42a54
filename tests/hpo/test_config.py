"""Search space from YAML: defaults, user dimensions, and errors that name the bad entry."""

from __future__ import annotations

import pytest

from shared.errors import StepError
from steps.hpo.config import load_search_space, to_tune_space


def _space(tmp_path, text: str):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return load_search_space(path)


def test_default_space_is_the_documented_one():
    from ray.tune.search.sample import Categorical, Float

    space = load_search_space(None)
    assert space["learning_rate"] == {"distribution": "loguniform", "low": 1e-5, "high": 1e-4}
    assert space["batch_size"]["values"] == [16, 32]
    assert space["weight_decay"] == {"distribution": "uniform", "low": 0.0, "high": 0.1}
    tune_space = to_tune_space(space)
    assert isinstance(tune_space["learning_rate"], Float)
    assert isinstance(tune_space["batch_size"], Categorical)
    assert tune_space["learning_rate"].lower == 1e-5 and tune_space["learning_rate"].upper == 1e-4


def test_users_add_dimensions_without_code_changes(tmp_path):
    space = _space(
        tmp_path,
        "warmup_ratio: {distribution: uniform, low: 0.0, high: 0.2}\n"
        "max_length: {distribution: choice, values: [64, 128]}\n"
        "num_epochs: {distribution: randint, low: 1, high: 4}\n"
        "dropout: {distribution: constant, value: 0.2}\n",
    )
    tune_space = to_tune_space(space)
    assert tune_space["dropout"] == 0.2
    samples = {tune_space["num_epochs"].sample() for _ in range(50)}
    assert samples <= {1, 2, 3}


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("learning_rate: {distribution: gauss, low: 1, high: 2}\n", ["learning_rate", "gauss", "choice"]),
        ("learnin_rate: {distribution: uniform, low: 0, high: 1}\n", ["learnin_rate", "batch_size"]),
        ("learning_rate: {distribution: loguniform, low: 0, high: 1.0e-4}\n", ["learning_rate", "low > 0"]),
        ("weight_decay: {distribution: uniform, low: 0.2, high: 0.1}\n", ["weight_decay", "below high"]),
        ("batch_size: {distribution: choice, values: [0, 16]}\n", ["batch_size", "value 0"]),
        ("batch_size: {distribution: choice}\n", ["batch_size", "missing values"]),
        ("batch_size: 16\n", ["batch_size", "distribution"]),
        ("warmup_ratio: {distribution: uniform, low: 0, high: 1, q: 2}\n", ["warmup_ratio", "unexpected q"]),
    ],
)
def test_invalid_entries_fail_naming_the_entry(tmp_path, text, needles):
    with pytest.raises(StepError) as err:
        _space(tmp_path, text)
    for needle in needles:
        assert needle in str(err.value)


def test_missing_or_empty_file(tmp_path):
    with pytest.raises(StepError, match="does not exist"):
        load_search_space(tmp_path / "nope.yaml")
    with pytest.raises(StepError, match="non-empty mapping"):
        _space(tmp_path, "[]\n")
