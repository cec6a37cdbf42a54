"""Content-keyed memoization: the data's commit and the code's version, never names that move."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pipelines.local_runner.cache import Cache
from pipelines.local_runner.cache import cache_key as runner_cache_key
from steps import cache_keys as cache_key

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=repo, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


def _keys(registry: Path, revision: str, **kw):
    args = dict(
        registry_url=str(registry), data_version=revision, data_path="data/emotion", model="m",
        max_length="128", limit="0", eval_limit="0", seed="0", image_tag="v1.2.3", code=COMMIT, in_image=True,
    )  # fmt: skip
    return cache_key.cache_keys(**{**args, **kw})


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    repo = tmp_path / "data-registry"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    (repo / "data.dvc").write_text("md5: 1\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "v1")
    _git(repo, "tag", "-a", "emotion-v1", "-m", "v1")
    return repo


def test_new_data_at_main_is_a_new_key_and_unchanged_data_the_same(registry):
    first = _keys(registry, "main")
    assert first.memoized and first.data_commit == _git(registry, "rev-parse", "HEAD")
    assert _keys(registry, "main") == first  # unchanged data: served from the cache
    (registry / "data.dvc").write_text("md5: 2\n")
    _git(registry, "commit", "-qam", "v2")
    second = _keys(registry, "main")
    assert second.data_commit == _git(registry, "rev-parse", "HEAD") != first.data_commit
    assert second.dvc_fetch != first.dvc_fetch and second.tokenize != first.tokenize  # fetched again
    # an annotated tag resolves to the commit it points at, the same content as that commit
    tag = _keys(registry, "emotion-v1")
    assert tag.data_commit == first.data_commit and tag.dvc_fetch == first.dvc_fetch
    assert _keys(registry, first.data_commit).dvc_fetch == first.dvc_fetch


def test_an_unresolvable_revision_disables_memoization(registry):
    keys = _keys(registry, "no-such-branch", workflow_uid="wf-1")
    assert not keys.memoized and keys.dvc_fetch.startswith(cache_key.NO_MEMO_PREFIX)


@pytest.mark.parametrize("tag", ["DEV", "latest", ""])
def test_mutable_tags_in_an_image_disable_memoization_per_workflow(registry, tag):
    a = _keys(registry, "main", image_tag=tag, workflow_uid="wf-a")
    b = _keys(registry, "main", image_tag=tag, workflow_uid="wf-b")
    assert not a.memoized and a.dvc_fetch.startswith("nomemo-dvc-fetch-")
    assert a.dvc_fetch != b.dvc_fetch  # never another workflow's entry
    assert cache_key.ARGO_KEY.match(a.dvc_fetch) and cache_key.ARGO_KEY.match(a.tokenize)


def test_local_checkout_keys_on_its_commit_and_not_on_uncommitted_code(registry):
    clean = _keys(registry, "main", image_tag="DEV", in_image=False)
    assert clean.memoized and clean.code_version == COMMIT
    other = _keys(registry, "main", image_tag="DEV", in_image=False, code="f" * 40)
    assert other.dvc_fetch != clean.dvc_fetch  # new code: new key
    dirty = _keys(registry, "main", image_tag="DEV", in_image=False, code=COMMIT + "-dirty")
    assert not dirty.memoized
    unknown = _keys(registry, "main", image_tag="latest", in_image=False, code="unknown")
    assert not unknown.memoized


def test_the_local_runner_never_looks_up_or_stores_a_nomemo_key(tmp_path):
    cache = Cache(tmp_path / "cache")
    key = runner_cache_key({"name": "t"}, "nomemo-dvc-fetch-abc", {}, {}, {})
    assert key.startswith(cache_key.NO_MEMO_PREFIX)
    out = tmp_path / "out.txt"
    out.write_text("x")
    cache.store(key, "t", {}, None, {"a": out})
    assert cache.lookup(key) is None and not (tmp_path / "cache" / key).exists()
    normal = runner_cache_key({"name": "t"}, "dvc-fetch-abc", {}, {}, {})
    cache.store(normal, "t", {}, None, {"a": out})
    assert cache.lookup(normal) is not None
