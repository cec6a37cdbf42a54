"""The dataset source: a folder, else the Hub (here a loopback server speaking its file API), else an error.

The Hub path runs against `tests/hub_server.py`, never the real Hub. In-process tests use the
committed sample with the expected figures patched to match it; the `make registry` tests run the
real Makefile in a copy of the repository that has no `../shared` beside it.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shared.data_registry import source
from shared.data_registry.format import check_metadata_matches, validate_dataset
from shared.errors import StepError
from tests.hub_server import FakeHub

ROOT = Path(__file__).resolve().parents[2]
COMMIT = source.HUB_REVISION


def hub_parquet(path: Path, *, names=source.LABEL_NAMES, change_label_at: int | None = None) -> bytes:
    """A split as the Hub stores it: `text`, `label` and the `huggingface` features metadata."""
    table = pq.read_table(path).select(["text", "label"])
    if change_label_at is not None:
        labels = table.column("label").to_pylist()
        labels[change_label_at] = (labels[change_label_at] + 1) % len(names)
        table = table.set_column(1, "label", pa.array(labels, pa.int64()))
    features = {
        "text": {"dtype": "string", "_type": "Value"},
        "label": {"names": list(names), "_type": "ClassLabel"},
    }
    table = table.replace_schema_metadata({"huggingface": json.dumps({"info": {"features": features}})})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def expected_for(dataset: Path) -> dict[str, source.HubSplit]:
    """The expected figures for a dataset folder's splits (as recorded for the pinned revision)."""
    out = {}
    for split, spec in source.HUB_SPLITS.items():
        table = pq.read_table(dataset / f"{split}.parquet")
        texts, labels = table.column("text").to_pylist(), table.column("label").to_pylist()
        counts = tuple(labels.count(i) for i in range(len(source.LABEL_NAMES)))
        out[split] = source.HubSplit(spec.file, len(texts), counts, source.rows_sha256(texts, labels))
    return out


def serve(dataset: Path, **kwargs) -> FakeHub:
    splits = source.HUB_SPLITS.items()
    files = {spec.file: hub_parquet(dataset / f"{split}.parquet", **kwargs) for split, spec in splits}
    return FakeHub(repo=source.HUB_REPO, commit=COMMIT, files=files).start()


@pytest.fixture
def online(monkeypatch):
    """huggingface_hub read HF_HUB_OFFLINE=1 (tests/conftest.py) at import: let this test go online."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


@pytest.fixture
def sample_hub(dataset_dir, monkeypatch):
    monkeypatch.setattr(source, "HUB_SPLITS", expected_for(dataset_dir))
    hub = serve(dataset_dir)
    yield hub
    hub.stop()


def test_an_explicit_folder_wins_and_a_wrong_one_is_an_error(monkeypatch, tmp_path, dataset_dir):
    monkeypatch.setenv("EMOTION_DATASET_DIR", str(dataset_dir))
    monkeypatch.setattr(source, "TEAM_DATASET_DIR", tmp_path / "team")
    assert source.resolve_source() == dataset_dir
    monkeypatch.setenv("EMOTION_DATASET_DIR", str(tmp_path / "typo"))
    with pytest.raises(StepError, match="typo.*EMOTION_DATASET_DIR.*not a directory"):
        source.resolve_source()


def test_the_team_folder_comes_next(monkeypatch, dataset_dir):
    monkeypatch.delenv("EMOTION_DATASET_DIR", raising=False)
    monkeypatch.setattr(source, "TEAM_DATASET_DIR", dataset_dir)
    assert source.resolve_source(download=False) == dataset_dir


def test_hub_download_is_verified_laid_out_and_reused(sample_hub, online, tmp_path):
    out, cache = tmp_path / "laid-out", tmp_path / "hf-cache"
    got = source.download_from_hub(out, endpoint=sample_hub.url, cache_dir=cache)
    assert got == out
    _, stats = validate_dataset(out)
    check_metadata_matches(out, stats)
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["hub"] == {"repo": "dair-ai/emotion", "revision": COMMIT}
    assert set(meta["splits"]) == {"train", "validation"}  # test is kept back, as in the team copy
    assert {m for m, _ in sample_hub.requests} == {"HEAD", "GET"}
    prefix = f"/datasets/dair-ai/emotion/resolve/{COMMIT}/split/"
    assert all(p.startswith(prefix) for _, p in sample_hub.requests)

    sample_hub.requests.clear()  # laid out already: the Hub is not asked again
    assert source.download_from_hub(out, endpoint=sample_hub.url, cache_dir=cache) == out
    assert sample_hub.requests == []

    shutil.rmtree(out)  # gone, but in the HF cache: offline still works, without a request
    from huggingface_hub import constants

    constants.HF_HUB_OFFLINE = True
    source.download_from_hub(out, endpoint=sample_hub.url, cache_dir=cache)
    assert sample_hub.requests == [] and (out / "train.parquet").is_file()


def test_a_changed_row_or_label_name_is_refused(dataset_dir, online, monkeypatch, tmp_path):
    monkeypatch.setattr(source, "HUB_SPLITS", expected_for(dataset_dir))
    for kwargs, error in (
        ({"change_label_at": 3}, "rows per label id"),
        ({"names": ("joy", "sadness", "love", "anger", "fear", "surprise")}, "label names"),
    ):
        hub = serve(dataset_dir, **kwargs)
        try:
            with pytest.raises(StepError, match=error):
                source.download_from_hub(tmp_path / "out", endpoint=hub.url, cache_dir=tmp_path / str(kwargs))
        finally:
            hub.stop()
        assert not (tmp_path / "out").exists()


def test_an_unknown_revision_names_the_file_and_revision(sample_hub, online, tmp_path):
    with pytest.raises(StepError, match=r"could not download dair-ai/emotion@0000000000ab split/train"):
        source.download_from_hub(
            tmp_path / "out", revision="0000000000ab" + "0" * 28, endpoint=sample_hub.url, cache_dir=tmp_path
        )


# --- the Makefile, in a copy of the repository with no ../shared beside it ---------------------------


def fresh_copy(tmp_path: Path) -> Path:
    repo = tmp_path / "clone" / "repo"
    shutil.copytree(ROOT / "shared", repo / "shared", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "Makefile", repo / "Makefile")
    return repo


def make_registry(repo: Path, **env: str) -> subprocess.CompletedProcess:
    # not EMOTION_/HF_ settings, nor the MAKELEVEL/MAKEFLAGS of a `make test` that runs this test
    drop = ("EMOTION_", "HF_", "TRANSFORMERS_", "MAKE", "MFLAGS")
    base = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    base.pop("PYTHONPATH", None)  # `python -m` runs the copy's code (cwd first on sys.path)
    cmd = ["make", "--no-print-directory", "registry", f"PY={sys.executable}", "STAMP=", "LOCAL_DIR=.local"]
    return subprocess.run(cmd, cwd=repo, env={**base, **env}, capture_output=True, text=True, timeout=600)


def test_make_registry_offline_without_a_dataset_fails_in_one_clear_line(tmp_path):
    repo = fresh_copy(tmp_path)
    proc = make_registry(repo, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    assert proc.returncode != 0
    ours = [line for line in proc.stderr.splitlines() if not re.match(r"make(\[\d+\])?: ", line)]
    assert len(ours) == 1, proc.stderr
    assert ours[0].startswith("data-registry: error: no emotion dataset:")
    assert "EMOTION_DATASET_DIR" in ours[0] and "network access" in ours[0] and "HF_HUB_OFFLINE" in ours[0]
    assert not (repo / ".local" / "data-registry").exists()


def test_make_registry_with_the_hub_unreachable_fails_at_once_in_one_clear_line(tmp_path):
    """No HF_HUB_OFFLINE, but no Hub either (here a closed loopback port): no retries, one line."""
    from shared.processes import free_port

    repo = fresh_copy(tmp_path)
    endpoint = f"http://127.0.0.1:{free_port()}"
    proc = make_registry(repo, HF_ENDPOINT=endpoint, HF_HUB_OFFLINE="0", HF_HOME=str(tmp_path / "hf"))
    assert proc.returncode != 0
    ours = [line for line in proc.stderr.splitlines() if not re.match(r"make(\[\d+\])?: ", line)]
    assert len(ours) == 1, proc.stderr
    assert ours[0].startswith("data-registry: error: no emotion dataset:")
    assert f"Hub unreachable: cannot connect to {endpoint[len('http://') :]}" in ours[0]
    assert "EMOTION_DATASET_DIR" in ours[0] and "network access" in ours[0]


def test_make_registry_downloads_from_the_hub_when_no_folder_is_there(full_dataset_dir, tmp_path):
    """The real pinned figures: the loopback Hub serves the full dataset, in the Hub's own format."""
    hub = serve(full_dataset_dir)
    try:
        repo = fresh_copy(tmp_path)
        env = {"HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf")}
        proc = make_registry(repo, **env)
        assert proc.returncode == 0, proc.stderr
        assert "emotion-v1.0.0 published" in proc.stdout
        laid_out = repo / ".local" / "datasets" / f"emotion-hub-{COMMIT[:12]}"
        meta = json.loads((laid_out / "metadata.json").read_text())
        team = json.loads((full_dataset_dir / "metadata.json").read_text())
        for split in ("train", "validation"):
            assert meta["splits"][split]["rows"] == team["splits"][split]["rows"]
            assert meta["splits"][split]["class_counts"] == team["splits"][split]["class_counts"]
        # Offline now: the laid-out copy is used and the registry build is a no-op.
        hub.requests.clear()
        again = make_registry(repo, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
        assert again.returncode == 0, again.stderr
        assert "already published" in again.stdout and hub.requests == []
    finally:
        hub.stop()
