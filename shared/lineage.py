"""One place that produces the lineage tags used on parent runs, child runs and model versions."""

from __future__ import annotations

import subprocess
from pathlib import Path

from shared.environment import PlatformEnvironment
from shared.mlflow_contract import (
    CODE_VERSION_TAG,
    DATA_VERSION_TAG,
    DATASET_HASH_TAG,
    IMAGE_TAG_TAG,
    REGISTRY_URL_TAG,
    WORKFLOW_UID_TAG,
)
from shared.settings import Settings

DIRTY_SUFFIX = "-dirty"  # as `git describe --dirty`: the tracked files differ from the commit


def _git(repo_dir: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo_dir, capture_output=True, text=True, timeout=5, check=True
    ).stdout.strip()


def code_version(repo_dir: Path | None = None) -> str:
    """The git commit of the code that runs: `GIT_COMMIT` (baked into images) or `git rev-parse`.

    A working tree whose tracked files have uncommitted changes (staged or not) gives
    `<commit>-dirty`: the code that ran is not the commit. Untracked files do not count.
    """
    if commit := PlatformEnvironment().git_commit:
        return commit
    repo_dir = repo_dir or Path(__file__).resolve().parent.parent
    try:
        commit = _git(repo_dir, "rev-parse", "HEAD")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if not commit:
        return "unknown"
    try:
        dirty = bool(_git(repo_dir, "status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return commit
    return commit + DIRTY_SUFFIX if dirty else commit


def lineage_tags(
    settings: Settings,
    *,
    dataset_hash: str | None = None,
    registry_url: str | None = None,
    data_version: str | None = None,
) -> dict[str, str]:
    """Tags that tie a run or model version to its data, code, image and workflow run."""
    tags = {
        WORKFLOW_UID_TAG: settings.argo_workflow_uid,
        IMAGE_TAG_TAG: settings.docker_image_tag,
        CODE_VERSION_TAG: code_version(),
    }
    if data_version:
        tags[DATA_VERSION_TAG] = data_version
    if dataset_hash:
        tags[DATASET_HASH_TAG] = dataset_hash
    if registry_url:
        tags[REGISTRY_URL_TAG] = registry_url
    return tags
