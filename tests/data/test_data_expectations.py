"""Expectations on the dataset and on the tokenized output (DESIGN.md: the tests' "data" group).

The real emotion dataset must match its own metadata and keep the properties the pipeline
relies on; tokenized output, from the step or from the fixture later steps use, must keep the
format contract. The full-size path (registry -> fetch -> tokenize on all 18,000 rows) is slow.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from shared.data_registry.build import BuildInput, build
from shared.data_registry.format import check_metadata_matches, read_label_map, validate_dataset
from shared.data_registry.hashing import file_sha256

LABELS = ["sadness", "joy", "love", "anger", "fear", "surprise"]


@pytest.fixture(scope="module")
def real(full_dataset_dir: Path):
    label_map, stats = validate_dataset(full_dataset_dir)
    meta = json.loads((full_dataset_dir / "metadata.json").read_text())
    frames = {s: pd.read_parquet(full_dataset_dir / f"{s}.parquet") for s in stats}
    return label_map, stats, meta, frames


def test_dataset_passes_the_schema_and_matches_its_metadata(real, full_dataset_dir):
    label_map, stats, meta, _ = real
    assert list(label_map.values()) == LABELS
    check_metadata_matches(full_dataset_dir, stats)
    for split, info in meta["splits"].items():
        assert stats[split].rows == info["rows"]
        assert stats[split].class_counts(label_map) == info["class_counts"]
        assert file_sha256(full_dataset_dir / f"{split}.parquet") == info["sha256"]


def test_every_label_is_present_with_similar_shares_across_splits(real):
    label_map, stats, _, _ = real
    shares = {
        split: {name: n / s.rows for name, n in s.class_counts(label_map).items()}
        for split, s in stats.items()
    }
    for split, share in shares.items():
        assert min(share.values()) > 0.02, f"{split}: a label has under 2% of the rows"
    for name in LABELS:
        assert abs(shares["train"][name] - shares["validation"][name]) < 0.03, name


def test_texts_look_as_published(real):
    _, _, meta, frames = real
    for split, df in frames.items():
        words = df["text"].str.split().map(len)
        info = meta["splits"][split]
        assert words.min() == info["min_whitespace_tokens"] and words.max() == info["max_whitespace_tokens"]
        assert abs(words.mean() - info["avg_whitespace_tokens"]) < 0.01
        assert (df["text"] == df["text"].str.strip()).all(), f"{split}: surrounding whitespace"
        assert (df["text"] == df["text"].str.lower()).all(), f"{split}: texts are lowercased as published"


def test_known_duplicates_stay_within_the_documented_quirks(real):
    """README: 31 repeated texts in train, 2 in validation, 5 shared between them (as published)."""
    _, _, _, frames = real
    assert frames["train"]["text"].duplicated().sum() <= 31
    assert frames["validation"]["text"].duplicated().sum() <= 2
    assert len(set(frames["train"]["text"]) & set(frames["validation"]["text"])) <= 5


def test_step_output_meets_the_tokenized_expectations(small_tokenized, small_source, check_tokenized):
    tables = check_tokenized(small_tokenized, small_source)
    assert set(tables) == {"train", "tune", "validation"}


def test_shared_tokenized_fixture_meets_the_same_expectations(tokenized_dir, check_tokenized):
    """The hand-made fixture later steps test with has the format the tokenize step writes."""
    check_tokenized(tokenized_dir)


@pytest.mark.slow
def test_full_dataset_through_registry_fetch_and_tokenize(full_dataset_dir, tmp_path, check_tokenized):
    from steps.dvc_fetch import FetchInput, fetch
    from steps.tokenize import TokenizeInput, tokenize

    built = build(BuildInput(source=full_dataset_dir, registry=tmp_path / "data-registry"))
    assert built.version == "emotion-v1.0.0" and built.rows == {"train": 16000, "validation": 2000}
    fetched = fetch(
        FetchInput(
            registry_url=str(tmp_path / "data-registry"),
            data_version="emotion-v1.0.0",
            output_dir=tmp_path / "ds",
        )
    )
    meta = json.loads((full_dataset_dir / "metadata.json").read_text())
    assert fetched.dataset_hash == built.dataset_hash
    assert fetched.class_counts == {s: meta["splits"][s]["class_counts"] for s in ("train", "validation")}
    assert read_label_map(tmp_path / "ds") == read_label_map(full_dataset_dir)
    result = tokenize(TokenizeInput(dataset_dir=tmp_path / "ds", output_dir=tmp_path / "tok"))
    assert result.rows == {"train": 14400, "tune": 1600, "validation": 2000}  # tune: 10% of train
    assert result.rows_at_max_length == {"train": 0, "tune": 0, "validation": 0}  # longest text: 66 words
    assert 18 < result.tokens["train"] / 14400 < 30  # ~20 word pieces + [CLS]/[SEP] per text
    check_tokenized(tmp_path / "tok", tmp_path / "ds")
