"""The registry command: versions as git tags, data in the DVC remote, idempotent, never moving a tag."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from shared.data_registry.build import BuildInput, build, versions
from shared.data_registry.hashing import file_md5
from shared.errors import StepError
from steps.dvc_fetch import FetchInput, fetch

ROOT = Path(__file__).resolve().parents[2]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


def dvc_file(repo: Path, rev: str, path: str = "data/emotion") -> dict:
    return yaml.safe_load(git(repo, "show", f"{rev}:{path}.dvc"))


def remote_objects(remote: Path) -> set[str]:
    return {p.parent.name + p.name for p in (remote / "files" / "md5").glob("*/*")}


def test_build_publishes_a_tagged_version_with_data_in_the_remote(registry, small_source):
    tags = git(registry, "tag", "--list").split()
    assert tags == ["emotion-v1.0.0", "emotion-v1.1.0"]
    out = dvc_file(registry, "emotion-v1.0.0")["outs"][0]
    assert out["path"] == "emotion" and out["md5"].endswith(".dir") and out["nfiles"] == 3
    # every file of the version is in the DVC remote, addressed by its md5
    objects = remote_objects(registry.parent / "dvc-remote")
    for f in ("train.parquet", "validation.parquet", "metadata.json"):
        assert file_md5(small_source / f) in objects
    assert out["md5"].removesuffix(".dir") + ".dir" in objects
    # the data itself is not in git, only its .dvc pointer
    assert "train.parquet" not in git(registry, "ls-tree", "-r", "--name-only", "emotion-v1.0.0")
    assert git(registry, "status", "--porcelain") == ""
    # the remote is stored relative to .dvc/, so registry + remote can move together
    assert "url = ../../dvc-remote" in (registry / ".dvc" / "config").read_text()


def test_build_is_idempotent(registry_copy, small_source):
    before = git(registry_copy, "rev-parse", "main")
    result = build(BuildInput(source=small_source, registry=registry_copy))
    assert not result.created
    assert result.version == "emotion-v1.0.0"
    assert result.commit == git(registry_copy, "rev-parse", "emotion-v1.0.0^{commit}")
    assert result.dataset_hash == dvc_file(registry_copy, "emotion-v1.0.0")["outs"][0]["md5"]
    assert git(registry_copy, "rev-parse", "main") == before
    assert result.tags == ["emotion-v1.0.0", "emotion-v1.1.0"]


def test_a_new_version_adds_a_tag_and_leaves_the_old_one_alone(
    registry_copy, real_splits, make_source, tmp_path
):
    old = {
        t: git(registry_copy, "rev-parse", f"{t}^{{commit}}") for t in ("emotion-v1.0.0", "emotion-v1.1.0")
    }
    old_hash = dvc_file(registry_copy, "emotion-v1.0.0")["outs"][0]["md5"]
    relabelled = real_splits["train"].head(60).copy()
    relabelled.loc[relabelled["label"] == 4, "label"] = 0
    source = make_source("v2", {"train": relabelled, "validation": real_splits["validation"].head(30)})
    result = build(BuildInput(source=source, registry=registry_copy, version="emotion-v2.0.0"))
    assert result.created and result.rows == {"train": 60, "validation": 30}
    assert {t: git(registry_copy, "rev-parse", f"{t}^{{commit}}") for t in old} == old
    assert dvc_file(registry_copy, "emotion-v1.0.0")["outs"][0]["md5"] == old_hash
    assert result.tags == ["emotion-v1.0.0", "emotion-v1.1.0", "emotion-v2.0.0"]
    # both versions are still fetchable, each with its own content
    first = fetch(
        FetchInput(registry_url=str(registry_copy), data_version="emotion-v1.0.0", output_dir=tmp_path / "a")
    )
    second = fetch(
        FetchInput(registry_url=str(registry_copy), data_version="emotion-v2.0.0", output_dir=tmp_path / "b")
    )
    assert first.dataset_hash == old_hash and first.rows["train"] == 120
    assert second.dataset_hash == result.dataset_hash and second.class_counts["train"]["fear"] == 0
    listed = versions(registry_copy)
    assert [v["tag"] for v in listed] == result.tags and listed[0]["dataset_hash"] == old_hash


def test_a_tag_is_never_moved_to_different_data(registry_copy, larger_source):
    before = git(registry_copy, "rev-parse", "emotion-v1.0.0^{commit}")
    with pytest.raises(StepError, match=r"emotion-v1.0.0 already exists .* different data .* new --version"):
        build(BuildInput(source=larger_source, registry=registry_copy, version="emotion-v1.0.0"))
    assert git(registry_copy, "rev-parse", "emotion-v1.0.0^{commit}") == before
    assert git(registry_copy, "status", "--porcelain") == ""


def test_rerun_repairs_a_wiped_remote(registry_copy, small_source, tmp_path):
    remote = registry_copy.parent / "dvc-remote"
    shutil.rmtree(remote)
    build(BuildInput(source=small_source, registry=registry_copy))
    assert remote_objects(remote)
    shutil.rmtree(registry_copy / ".dvc" / "cache")  # now only the remote can serve the data
    result = fetch(
        FetchInput(
            registry_url=str(registry_copy), data_version="emotion-v1.1.0", output_dir=tmp_path / "out"
        )
    )
    assert result.rows["train"] == 180


def test_cli_works_without_a_git_identity(small_source, tmp_path):
    """CI has no user.name/user.email: the command supplies its own for the registry commits."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "EMAIL"))}
    env.update(
        HOME=str(home),
        GIT_CONFIG_GLOBAL=str(home / "none"),
        GIT_CONFIG_NOSYSTEM="1",
        XDG_CONFIG_HOME=str(home),
    )
    registry = tmp_path / "reg" / "data-registry"
    cmd = [
        sys.executable,
        "-m",
        "shared.data_registry",
        "build",
        "--source",
        str(small_source),
        "--registry",
        str(registry),
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "emotion-v1.0.0 published" in proc.stdout
    assert (tmp_path / "reg" / "dvc-remote" / "files").is_dir()
    author = subprocess.run(
        ["git", "log", "-1", "--format=%an <%ae>", "emotion-v1.0.0"],
        cwd=registry,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert author == "emotion data registry <data-registry@localhost>"
    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "already published" in again.stdout


def test_build_refuses_an_invalid_source(real_splits, make_source, tmp_path):
    train = real_splits["train"].head(20).copy()
    train.loc[[3, 11], "text"] = "  "
    source = make_source("bad", {"train": train, "validation": real_splits["validation"].head(5)})
    registry = tmp_path / "reg" / "data-registry"
    with pytest.raises(StepError, match=r"split 'train', field 'text': 2 empty .* rows 3, 11"):
        build(BuildInput(source=source, registry=registry))
    assert not registry.exists()


def test_build_refuses_metadata_that_does_not_describe_the_data(real_splits, make_source, tmp_path):
    source = make_source(
        "lying", {"train": real_splits["train"].head(20), "validation": real_splits["validation"].head(5)}
    )
    meta = (source / "metadata.json").read_text().replace('"rows": 20', '"rows": 21')
    (source / "metadata.json").write_text(meta)
    with pytest.raises(StepError, match=r"splits.train.rows says 21 but train.parquet has 20 rows"):
        build(BuildInput(source=source, registry=tmp_path / "reg"))


def test_bad_version_and_path_are_refused(small_source, tmp_path):
    with pytest.raises(StepError, match="not a valid git tag name"):
        build(BuildInput(source=small_source, registry=tmp_path / "r", version="emotion v1"))
    with pytest.raises(StepError, match="relative path inside the registry"):
        build(BuildInput(source=small_source, registry=tmp_path / "r", path="../outside"))
    with pytest.raises(StepError, match="not a directory"):
        build(BuildInput(source=tmp_path / "nope", registry=tmp_path / "r"))


def test_failed_push_leaves_no_commit_or_tag(small_source, tmp_path):
    registry = tmp_path / "reg" / "data-registry"
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the remote should be")
    with pytest.raises(StepError, match=r"could not push the dataset to the DVC remote .*not-a-directory"):
        build(BuildInput(source=small_source, registry=registry, remote=str(blocker / "remote")))
    assert git(registry, "tag", "--list") == ""
    assert git(registry, "status", "--porcelain") == ""
    assert not (registry / "data" / "emotion.dvc").exists()
    # and once the remote is usable, the same command succeeds
    result = build(BuildInput(source=small_source, registry=registry, remote=str(tmp_path / "remote")))
    assert result.created and remote_objects(tmp_path / "remote")


def test_s3_remote_with_endpoint(small_source, tmp_path, monkeypatch):
    """An s3:// remote (moto's S3 server standing in for MinIO): endpoint in the config, keys never."""
    pytest.importorskip("dvc_s3")
    moto_server = pytest.importorskip("moto.server")
    import boto3

    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        secret = "planted-secret-value-0123456789"
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test-key-id")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", endpoint)
        s3 = boto3.client("s3", endpoint_url=endpoint)
        s3.create_bucket(Bucket="datasets")
        registry = tmp_path / "data-registry"
        result = build(BuildInput(source=small_source, registry=registry, remote="s3://datasets/dvc"))
        assert result.created and result.remote == "s3://datasets/dvc"
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="datasets")["Contents"]]
        assert any(k.endswith(file_md5(small_source / "train.parquet")[2:]) for k in keys)
        config = (registry / ".dvc" / "config").read_text()
        assert f"endpointurl = {endpoint}" in config and secret not in config and "test-key-id" not in config
        assert secret not in git(registry, "log", "-p", "--all")
        shutil.rmtree(registry / ".dvc" / "cache")  # the data must come from S3
        fetched = fetch(
            FetchInput(registry_url=str(registry), data_version="emotion-v1.0.0", output_dir=tmp_path / "out")
        )
        assert fetched.dataset_hash == result.dataset_hash
        assert pd.read_parquet(tmp_path / "out" / "train.parquet").shape == (120, 2)
    finally:
        server.stop()
