"""dvc-fetch: a version out of the registry, verified against DVC's hashes, schema-checked, all or nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from shared.data_registry.build import BuildInput, build
from shared.data_registry.hashing import file_md5
from shared.errors import StepError, TransientError
from steps.dvc_fetch import FetchInput, fetch

ROOT = Path(__file__).resolve().parents[2]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


def recorded_md5(repo: Path, rev: str) -> str:
    return yaml.safe_load(git(repo, "show", f"{rev}:data/emotion.dvc"))["outs"][0]["md5"]


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


@pytest.fixture
def out(tmp_path) -> Path:
    """An output dir that already holds an older fetch: a failed fetch must leave it exactly so."""
    d = tmp_path / "dataset"
    d.mkdir()
    (d / "marker.txt").write_text("previous content")
    return d


def assert_untouched(out: Path) -> None:
    assert sorted(p.name for p in out.iterdir()) == ["marker.txt"]
    assert leftovers(out.parent) == []


def test_fetch_a_tagged_version(registry, small_source, tmp_path):
    inp = FetchInput(registry_url=str(registry), data_version="emotion-v1.0.0", output_dir=tmp_path / "ds")
    result = fetch(inp)
    assert result.resolved_commit == result.commit == git(registry, "rev-parse", "emotion-v1.0.0^{commit}")
    assert result.dataset_hash == recorded_md5(registry, "emotion-v1.0.0")
    assert result.data_version == "emotion-v1.0.0" and result.data_path == "data/emotion"
    assert result.splits == ["train", "validation"]
    assert result.rows == {"train": 120, "validation": 60}
    assert result.class_counts["train"] == {
        n: 20 for n in ("sadness", "joy", "love", "anger", "fear", "surprise")
    }
    for name in ("train.parquet", "validation.parquet", "metadata.json"):
        assert file_md5(tmp_path / "ds" / name) == file_md5(small_source / name)
    assert leftovers(tmp_path) == []


def test_fetch_replaces_a_previous_output_whole(registry, out):
    fetch(FetchInput(registry_url=str(registry), data_version="emotion-v1.1.0", output_dir=out))
    assert sorted(p.name for p in out.iterdir()) == ["metadata.json", "train.parquet", "validation.parquet"]
    assert leftovers(out.parent) == []


@pytest.mark.parametrize("rev", ["main", "commit"])
def test_fetch_by_branch_or_commit(registry, tmp_path, rev):
    head = git(registry, "rev-parse", "main")
    result = fetch(
        FetchInput(
            registry_url=str(registry),
            data_version=head if rev == "commit" else rev,
            output_dir=tmp_path / "ds",
        )
    )
    assert result.resolved_commit == head
    assert result.dataset_hash == recorded_md5(registry, "emotion-v1.1.0")
    assert result.class_counts["train"]["joy"] == 35 and result.class_counts["train"]["surprise"] == 25


def test_unknown_rev_lists_the_available_tags(registry, out):
    with pytest.raises(StepError) as err:
        fetch(FetchInput(registry_url=str(registry), data_version="emotion-v9.9.9", output_dir=out))
    assert "rev 'emotion-v9.9.9' does not exist" in str(err.value)
    assert "available dataset tags: emotion-v1.0.0, emotion-v1.1.0" in str(err.value)
    assert_untouched(out)


@pytest.mark.parametrize("kind", ["missing-path", "not-a-repo", "refused-url"])
def test_unreachable_registry_is_named(tmp_path, out, kind):
    url = {
        "missing-path": str(tmp_path / "no-such-registry"),
        "not-a-repo": str(out),
        "refused-url": "http://127.0.0.1:9/data-registry.git",
    }[kind]
    # A registry that refuses connections is down for now (retried, exit 75); a wrong path is bad input.
    expected = TransientError if kind == "refused-url" else StepError
    with pytest.raises(expected, match=rf"data registry {url} is unreachable"):
        fetch(FetchInput(registry_url=url, data_version="emotion-v1.0.0", output_dir=out))
    assert_untouched(out)


def test_missing_path_in_registry_is_named(registry, out):
    with pytest.raises(StepError, match=r"'data/other' does not exist in the registry"):
        fetch(FetchInput(registry_url=str(registry), data_path="data/other", output_dir=out))
    assert_untouched(out)


def _remote_object(registry: Path, md5: str) -> Path:
    return registry.parent / "dvc-remote" / "files" / "md5" / md5[:2] / md5[2:]


def test_missing_remote_object_is_named(registry_copy, small_source, out):
    shutil.rmtree(registry_copy / ".dvc" / "cache")  # nothing local: the remote must serve it
    md5 = file_md5(small_source / "train.parquet")
    _remote_object(registry_copy, md5).unlink()
    with pytest.raises(StepError) as err:
        fetch(FetchInput(registry_url=str(registry_copy), data_version="emotion-v1.0.0", output_dir=out))
    message = str(err.value)
    assert "data/emotion/train.parquet" in message and md5 in message
    assert str(registry_copy.parent / "dvc-remote") in message
    assert_untouched(out)


def test_missing_directory_listing_in_remote_is_named(registry_copy, out):
    shutil.rmtree(registry_copy / ".dvc" / "cache")
    dir_md5 = recorded_md5(registry_copy, "emotion-v1.0.0")
    _remote_object(registry_copy, dir_md5).unlink()
    with pytest.raises(StepError) as err:
        fetch(FetchInput(registry_url=str(registry_copy), data_version="emotion-v1.0.0", output_dir=out))
    message = str(err.value)  # names the exact object that is missing, and where it was looked for
    assert f"the file list of 'data/emotion' (DVC object {dir_md5}) is missing" in message, message
    assert str(registry_copy.parent / "dvc-remote") in message
    assert_untouched(out)


def test_corrupt_remote_object_fails_the_hash_check(registry_copy, small_source, out):
    shutil.rmtree(registry_copy / ".dvc" / "cache")
    md5 = file_md5(small_source / "validation.parquet")
    obj = _remote_object(registry_copy, md5)
    obj.chmod(0o644)
    obj.write_bytes(obj.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(StepError, match=rf"validation.parquet: content hash \w+ does not match .*{md5}"):
        fetch(FetchInput(registry_url=str(registry_copy), data_version="emotion-v1.0.0", output_dir=out))
    assert_untouched(out)


# --- schema violations: versions planted without the builder's own validation -------------------


@pytest.fixture(scope="module")
def planted(real_splits, source_writer, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bad-registry")
    train, validation = real_splits["train"].head(40).copy(), real_splits["validation"].head(12).copy()

    def plant(tag: str, splits: dict[str, pd.DataFrame]) -> None:
        source = source_writer(root / "sources" / tag, splits, describe=False)
        build(BuildInput(source=source, registry=root / "data-registry", version=tag, validate_source=False))

    empty_text = train.copy()
    empty_text.loc[[2, 9, 30], "text"] = ["", "   ", None]
    plant("bad-text", {"train": empty_text, "validation": validation})
    bad_label = validation.copy()
    bad_label.loc[[4, 7], "label"] = [9, -1]
    plant("bad-label", {"train": train, "validation": bad_label})
    plant("no-validation", {"train": train})
    plant("no-text-column", {"train": train.rename(columns={"text": "sentence"}), "validation": validation})
    wrong_type = validation.copy()
    wrong_type["label"] = wrong_type["label"].map(lambda i: f"class-{i}")
    plant("label-as-string", {"train": train, "validation": wrong_type})
    return root / "data-registry"


@pytest.mark.parametrize(
    ("tag", "pattern"),
    [
        (
            "bad-text",
            r"split 'train', field 'text': 3 empty or missing text\(s\) at rows 2, 9, 30 \(0-based\)",
        ),
        (
            "bad-label",
            r"split 'validation', field 'label': 2 label\(s\) not in the label map at rows 4 \(label 9\), "
            r"7 \(label -1\) \(0-based\); allowed: \[0, 1, 2, 3, 4, 5\]",
        ),
        ("no-validation", r"required split\(s\) validation missing .*validation.parquet.*found: train"),
        (
            "no-text-column",
            r"split 'train', field 'text': column is missing from train.parquet \(columns: sentence",
        ),
        (
            "label-as-string",
            r"split 'validation', field 'label': expected an integer column, found (large_)?string",
        ),
    ],
)
def test_schema_violations_name_split_rows_and_field(planted, out, tag, pattern):
    with pytest.raises(StepError, match=pattern) as err:
        fetch(FetchInput(registry_url=str(planted), data_version=tag, output_dir=out))
    assert f"dataset {tag} (data/emotion in {planted}) is invalid" in str(err.value)
    assert_untouched(out)


# --- the CLI --------------------------------------------------------------------------------------


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "steps.dvc_fetch", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def test_cli_takes_the_version_from_the_data_version_flag(registry, tmp_path):
    """Running on another dataset version means changing only the data-version parameter."""
    proc = _cli(
        "--registry-url",
        str(registry),
        "--output-dir",
        str(tmp_path / "ds"),
        "--result-dir",
        str(tmp_path / "res"),
        "--data-version",
        "emotion-v1.1.0",
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "res" / "result.json").read_text())
    assert result["data_version"] == "emotion-v1.1.0" and result["rows"] == {"train": 180, "validation": 72}
    assert (tmp_path / "res" / "dataset-hash").read_text() == recorded_md5(registry, "emotion-v1.1.0")
    commit = git(registry, "rev-parse", "emotion-v1.1.0^{commit}")
    assert (
        (tmp_path / "res" / "commit").read_text()
        == (tmp_path / "res" / "resolved-commit").read_text()
        == commit
    )
    assert json.loads((tmp_path / "res" / "class-counts").read_text())["train"]["joy"] == 35


def test_cli_bad_input_exits_2_with_one_clear_message(registry, tmp_path):
    proc = _cli(
        "--registry-url", str(registry), "--output-dir", str(tmp_path / "ds"), "--data-version", "nope"
    )
    assert proc.returncode == 2
    assert "available dataset tags: emotion-v1.0.0, emotion-v1.1.0" in " ".join(proc.stderr.split())
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "ds").exists()
