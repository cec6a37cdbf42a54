"""code_version names the commit, and says when the working tree's tracked files differ from it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from shared.lineage import DIRTY_SUFFIX, code_version, lineage_tags
from shared.settings import Settings


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def repo(tmp_path, monkeypatch) -> Path:
    """A git repo with one commit of a tracked file."""
    monkeypatch.delenv("GIT_COMMIT", raising=False)
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q")
    (root / "train.py").write_text("print('v1')\n")
    _git(root, "add", "train.py")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "v1")
    return root


def test_a_clean_tree_gives_the_commit(repo):
    head = _git(repo, "rev-parse", "HEAD")
    assert code_version(repo) == head
    (repo / "notes.txt").write_text("untracked files do not make the code dirty")
    assert code_version(repo) == head


def test_changed_tracked_files_mark_the_commit_dirty(repo):
    head = _git(repo, "rev-parse", "HEAD")
    (repo / "train.py").write_text("print('v2')\n")
    assert code_version(repo) == head + DIRTY_SUFFIX
    _git(repo, "add", "train.py")  # staged but not committed: still not the commit
    assert code_version(repo) == head + DIRTY_SUFFIX
    (repo / "train.py").write_text("print('v1')\n")
    _git(repo, "add", "train.py")
    assert code_version(repo) == head


def test_an_image_commit_wins_and_no_repo_is_unknown(repo, tmp_path, monkeypatch):
    (repo / "train.py").write_text("changed\n")
    assert code_version(tmp_path / "nowhere") == "unknown"
    monkeypatch.setenv("GIT_COMMIT", "abc1234")
    assert code_version(repo) == "abc1234"
    assert lineage_tags(Settings())["code_version"] == "abc1234"
