"""The `git` and `dvc` commands the registry runs.

DVC is the one installed next to this interpreter (the project's venv); git gets a fallback
identity where none is configured (CI), so commits and tags work anywhere.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from shared.errors import StepError

FALLBACK_IDENTITY = ("emotion data registry", "data-registry@localhost")


def _run(cmd: list[str], cwd: Path, what: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False
    )
    if proc.returncode != 0:
        detail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise StepError(f"{what} failed: {' '.join(detail[-3:]) if detail else f'exit {proc.returncode}'}")
    return proc.stdout


def _git_identity_args(cwd: Path) -> list[str]:
    """`-c user.name/-c user.email` where git has no identity configured (CI), so commits work.

    A configured identity wins; GIT_AUTHOR_*/GIT_COMMITTER_* variables still override both.
    """
    args: list[str] = []
    for key, fallback in (("user.name", FALLBACK_IDENTITY[0]), ("user.email", FALLBACK_IDENTITY[1])):
        configured = subprocess.run(
            ["git", "config", "--get", key], cwd=cwd, capture_output=True, text=True, check=False
        ).stdout.strip()
        if not configured:
            args += ["-c", f"{key}={fallback}"]
    return args


def git(repo: Path, *args: str, what: str | None = None) -> str:
    cmd = ["git", "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false", *_git_identity_args(repo), *args]
    return _run(cmd, repo, what or f"git {args[0]}")


def dvc(repo: Path, *args: str, what: str | None = None) -> str:
    """Run the `dvc` that is installed with this interpreter (the project's venv)."""
    return _run(
        [sys.executable, "-m", "dvc", *args], repo, what or f"dvc {args[0]}", env={"DVC_NO_ANALYTICS": "1"}
    )


def list_tags(repo: Path) -> list[str]:
    out = subprocess.run(
        ["git", "tag", "--list", "--sort=version:refname"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    return [t for t in out.stdout.split() if t]


def tag_commit(repo: Path, tag: str) -> str | None:
    proc = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"refs/tags/{tag}^{{commit}}"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip() or None


def recorded_hash(registry: str | Path, path: str, rev: str | None) -> str | None:
    """The DVC hash recorded for `path` at `rev` (`<md5>.dir`), read through DVC's repo API."""
    from dvc.repo import Repo

    with Repo.open(url=str(registry), rev=rev, subrepos=True, uninitialized=True) as repo:
        try:
            info = repo.dvcfs.info(path)
        except FileNotFoundError:
            return None
    return (info.get("dvc_info") or {}).get("md5") or info.get("md5")
