"""Tokenized data: loading, stratified limit, length buckets and padding to the batch maximum."""

from __future__ import annotations

import numpy as np
import pytest

from shared.errors import StepError
from steps.hpo.data import TokenizedSplit, bucketed_batches, collate, load_tokenized


def _split(rows: list[list[int]], labels: list[int] | None = None) -> TokenizedSplit:
    lengths = np.array([len(r) for r in rows], dtype=np.int32)
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return TokenizedSplit(
        ids=np.array([t for r in rows for t in r], dtype=np.int32),
        offsets=offsets,
        labels=np.array(labels or [0] * len(rows), dtype=np.int64),
        lengths=lengths,
    )


def test_collate_pads_only_to_the_batch_maximum():
    split = _split([[101, 5, 102], [101, 7, 8, 9, 10, 102], [101, 102]], [1, 2, 3])
    ids, mask, labels = collate(split, np.array([0, 2]), pad_token_id=0)
    assert ids.tolist() == [[101, 5, 102], [101, 102, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 1, 0]]
    assert labels.tolist() == [1, 3]


def test_collate_truncation_keeps_the_final_separator():
    split = _split([[101, 7, 8, 9, 10, 102], [101, 5, 102]])
    ids, mask, _ = collate(split, np.array([0, 1]), pad_token_id=0, max_length=4)
    assert ids.tolist() == [[101, 7, 8, 102], [101, 5, 102, 0]]
    assert mask.sum(axis=1).tolist() == [4, 3]


def test_training_buckets_cover_every_row_once_with_little_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 128, size=1000)
    batches = bucketed_batches(lengths, 32, np.random.default_rng(1))
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(1000))
    bucketed_pad = sum(int(lengths[b].max()) * len(b) for b in batches)
    random_pad = sum(int(lengths[b].max()) * len(b) for b in np.array_split(rng.permutation(1000), 32))
    assert bucketed_pad < 0.7 * random_pad
    again = bucketed_batches(lengths, 32, np.random.default_rng(2))
    assert [b.tolist() for b in again] != [b.tolist() for b in batches]  # reshuffled per epoch


def test_eval_batches_are_sorted_by_length():
    lengths = np.array([5, 1, 9, 3, 7])
    batches = bucketed_batches(lengths, 2, None)
    assert [lengths[b].tolist() for b in batches] == [[1, 3], [5, 7], [9]]


def test_load_tokenized_and_stratified_limit(tokenized_dir):
    full = load_tokenized(tokenized_dir)
    assert len(full.train) == 216 and len(full.tune) == 97  # validation is register's: not loaded
    assert not hasattr(full, "validation")
    assert full.pad_token_id == 0 and full.labels[0] == "sadness"
    limited = load_tokenized(tokenized_dir, limit=60, seed=1)
    assert len(limited.train) == 60
    assert np.bincount(limited.train.labels).tolist() == [10] * 6
    # the subset's rows are the original rows, token for token
    row = limited.train
    first = row.ids[row.offsets[0] : row.offsets[1]].tolist()
    ids, offsets = full.train.ids, full.train.offsets
    originals = [ids[offsets[i] : offsets[i + 1]].tolist() for i in range(216)]
    assert first in originals


def test_missing_tokenized_files_fail_naming_the_file(tokenized_dir, tmp_path):
    import shutil

    broken = tmp_path / "tok"
    shutil.copytree(tokenized_dir, broken)
    (broken / "validation.parquet").unlink()
    load_tokenized(broken)  # the search never reads the gate's split
    (broken / "tune.parquet").unlink()
    with pytest.raises(StepError, match="tune.parquet"):
        load_tokenized(broken)
    with pytest.raises(StepError, match="does not exist"):
        load_tokenized(tmp_path / "nowhere")
