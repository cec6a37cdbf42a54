"""Building the registry: publish a dataset directory as a version (git tag) of a DVC registry."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from shared.data_registry.format import (
    EXTRA_FILES,
    METADATA_FILE,
    check_metadata_matches,
    read_metadata,
    split_files,
    validate_dataset,
)
from shared.data_registry.gitdvc import dvc, git, list_tags, recorded_hash, tag_commit
from shared.data_registry.hashing import dvc_dir_hash, file_md5
from shared.environment import PlatformEnvironment
from shared.errors import StepError
from shared.object_store import check_s3_uri, is_s3_uri
from shared.settings import Settings

# The package's logger, as before the split into modules.
log = logging.getLogger("shared.data_registry")

DEFAULT_PATH = "data/emotion"
REMOTE_NAME = "storage"


class BuildInput(BaseModel):
    source: Path
    registry: Path
    remote: str | None = None  # a directory or s3://bucket/prefix; default <registry>/../dvc-remote
    remote_endpoint: str | None = None  # S3 endpoint (MinIO); default from the environment
    version: str | None = None  # the git tag; default <metadata name>-v<metadata version>
    path: str = DEFAULT_PATH
    validate_source: bool = True  # only tests turn this off, to plant bad data in a registry


class BuildResult(BaseModel):
    registry: str
    remote: str
    version: str
    path: str
    commit: str
    dataset_hash: str
    created: bool
    rows: dict[str, int]
    tags: list[str]


def default_version(meta: dict[str, Any]) -> str:
    if not meta.get("version"):
        raise StepError('metadata.json has no "version": pass --version (e.g. emotion-v1.1.0)')
    return f"{meta.get('name') or 'emotion'}-v{meta['version']}"


def _check_tag_name(version: str) -> None:
    proc = subprocess.run(
        ["git", "check-ref-format", f"refs/tags/{version}"], capture_output=True, check=False
    )
    if proc.returncode != 0 or not version:
        raise StepError(f"{version!r} is not a valid git tag name (try something like emotion-v1.1.0)")


def _check_path(path: str) -> str:
    clean = path.strip("/")
    parts = clean.split("/")
    if not clean or any(p in ("", ".", "..") for p in parts) or parts[0] in (".git", ".dvc"):
        raise StepError(f"--path {path!r} must be a relative path inside the registry, such as data/emotion")
    return clean


def _is_url(remote: str) -> bool:
    return bool(re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", remote))


def _dataset_files(source: Path) -> list[Path]:
    files = sorted(split_files(source).values()) + [source / METADATA_FILE]
    files += [source / name for name in EXTRA_FILES if (source / name).is_file()]
    return files


def _ensure_repo(registry: Path) -> None:
    if (registry / ".git").exists() and (registry / ".dvc").is_dir():
        return
    if registry.exists() and any(registry.iterdir()) and not (registry / ".git").exists():
        raise StepError(f"{registry} exists and is not a data registry (no .git); choose another --registry")
    registry.mkdir(parents=True, exist_ok=True)
    if not (registry / ".git").exists():
        git(registry, "init", "-q", "-b", "main")
    dvc(registry, "init", "-q")
    dvc(registry, "config", "core.analytics", "false")
    readme = registry / "README.md"
    readme.write_text(
        "# Data registry\n\n"
        "Each dataset version is a git tag (e.g. `emotion-v1.0.0`); the data is tracked by DVC and\n"
        "stored in the DVC remote configured in `.dvc/config`. Built by `python -m shared.data_registry`.\n"
        "Fetch a version with `python -m steps.dvc_fetch --registry-url <this repo> --data-version <tag>`.\n"
    )
    git(registry, "add", "-A", ".dvc", "README.md", ".dvcignore")
    git(registry, "commit", "-q", "-m", "Initialize the DVC data registry")


def _resolve_remote(inp: BuildInput, registry: Path) -> tuple[str, str, str | None]:
    """(url to store in .dvc/config, url to show, S3 endpoint or None)."""
    endpoint = None
    if inp.remote and _is_url(inp.remote):
        url = inp.remote
        if url.startswith(("s3://", "s3a://")):
            env = PlatformEnvironment()
            endpoint = (
                inp.remote_endpoint
                or Settings().mlflow_s3_endpoint_url
                or env.aws_endpoint_url_s3
                or env.aws_endpoint_url
            )
        return url, url, endpoint
    if inp.remote:
        target = Path(inp.remote).expanduser().resolve()
        return str(target), str(target), None
    # The default sits beside the registry; stored relative to .dvc/ so the two move together.
    target = (registry.parent / "dvc-remote").resolve()
    target.mkdir(parents=True, exist_ok=True)
    return os.path.relpath(target, registry / ".dvc"), str(target), None


def _ensure_remote(registry: Path, url: str, endpoint: str | None) -> None:
    """Make `storage` the default remote with this URL (and endpoint); commit if it changed."""
    from dvc.config import Config

    conf = Config.load_file(str(registry / ".dvc" / "config"))
    current = (conf.get("remote") or {}).get(REMOTE_NAME) or {}
    default = (conf.get("core") or {}).get("remote")
    if current.get("url") == url and current.get("endpointurl") == endpoint and default == REMOTE_NAME:
        return
    if not _is_url(url) and not os.path.isabs(url):
        (registry / ".dvc" / url).resolve().mkdir(parents=True, exist_ok=True)
    # `dvc remote add` takes a relative path relative to the cwd; we run it in .dvc/ so the
    # stored path is exactly `url`.
    dvc(registry / ".dvc", "remote", "add", "--force", "--default", REMOTE_NAME, url, what="dvc remote add")
    if endpoint:
        dvc(registry, "remote", "modify", REMOTE_NAME, "endpointurl", endpoint, what="dvc remote modify")
    elif current.get("endpointurl"):
        dvc(registry, "remote", "modify", "--unset", REMOTE_NAME, "endpointurl", what="dvc remote modify")
    git(registry, "add", ".dvc/config")
    if git(registry, "status", "--porcelain", "--", ".dvc/config").strip():
        git(registry, "commit", "-q", "-m", f"Point the DVC remote at {url}")


@contextlib.contextmanager
def _registry_lock(registry: Path) -> Iterator[None]:
    """One build at a time per registry (make demo and a test run may race)."""
    lock_path = registry / ".git" / "emotion-data-registry.lock"
    with open(lock_path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _push(registry: Path, shown_remote: str, *args: str) -> None:
    try:
        dvc(registry, "push", "-q", *args, what="dvc push")
    except StepError as exc:
        raise StepError(f"could not push the dataset to the DVC remote {shown_remote}: {exc}") from None


def _restore_workspace(registry: Path, path: str) -> None:
    """Undo a half-done publish (dvc add done, commit not): back to the committed state."""
    dvc_file = f"{path}.dvc"
    parent_ignore = str(Path(path).parent / ".gitignore")
    for name in (dvc_file, parent_ignore):
        tracked = subprocess.run(
            ["git", "ls-files", "--error-unmatch", name], cwd=registry, capture_output=True, check=False
        )
        if tracked.returncode == 0:
            subprocess.run(["git", "checkout", "-q", "HEAD", "--", name], cwd=registry, check=False)
        else:
            subprocess.run(
                ["git", "rm", "-q", "--cached", "--ignore-unmatch", name], cwd=registry, check=False
            )
            (registry / name).unlink(missing_ok=True)
    if (registry / dvc_file).exists():
        subprocess.run(
            [sys.executable, "-m", "dvc", "checkout", "-q", "--force", dvc_file],
            cwd=registry,
            capture_output=True,
            check=False,
        )
    else:
        shutil.rmtree(registry / path, ignore_errors=True)


def build(inp: BuildInput) -> BuildResult:
    """Publish the dataset in `inp.source` as version `inp.version`; a no-op if already there."""
    source = Path(inp.source).expanduser().resolve()
    if not source.is_dir():
        raise StepError(f"dataset source {inp.source} is not a directory")
    meta = read_metadata(source)
    version = inp.version or default_version(meta)
    _check_tag_name(version)
    path = _check_path(inp.path)
    if inp.validate_source:
        _, stats = validate_dataset(source)
        check_metadata_matches(source, stats)
        rows = {name: s.rows for name, s in stats.items()}
    else:
        rows = {}
    meta_version = str(meta.get("version", ""))
    if inp.version and meta_version and not version.endswith(f"v{meta_version}"):
        log.warning(
            "publishing %s although %s says version %s; consider updating it",
            version,
            METADATA_FILE,
            meta_version,
        )
    files = _dataset_files(source)
    expected = dvc_dir_hash({f.name: file_md5(f) for f in files})

    registry = Path(inp.registry).expanduser().resolve()
    if inp.remote and is_s3_uri(inp.remote):  # a bad endpoint, key or bucket fails before any commit
        check_s3_uri(inp.remote, Settings(), endpoint_url=_resolve_remote(inp, registry)[2])
    _ensure_repo(registry)
    with _registry_lock(registry):
        stored_url, shown_remote, endpoint = _resolve_remote(inp, registry)
        _ensure_remote(registry, stored_url, endpoint)
        result = partial(
            BuildResult,
            registry=str(registry),
            remote=shown_remote,
            version=version,
            path=path,
            dataset_hash=expected,
            rows=rows,
        )

        commit = tag_commit(registry, version)
        if commit is not None:
            recorded = recorded_hash(registry, path, version)
            if recorded != expected:
                raise StepError(
                    f"tag {version} already exists in {registry} with different data "
                    f"({path}: {recorded or 'absent'}, source: {expected}); tags are never moved: "
                    f"publish this data under a new --version (existing: {', '.join(list_tags(registry))})"
                )
            # Idempotent re-run: make sure the remote holds every version (repairs a wiped remote).
            _push(registry, shown_remote, "--all-tags")
            log.info("%s already published at %s (%s)", version, commit[:12], expected)
            return result(commit=commit, created=False, tags=list_tags(registry))

        dirty = [
            line
            for line in git(registry, "status", "--porcelain").splitlines()
            if line[3:].strip() not in (f"{path}.dvc", str(Path(path).parent / ".gitignore"))
        ]
        if dirty:
            raise StepError(
                f"{registry} has uncommitted changes ({'; '.join(dirty[:5])}); commit or discard them first"
            )
        target = registry / path
        try:
            if target.exists():
                shutil.rmtree(target)
            target.mkdir(parents=True)
            for f in files:
                shutil.copyfile(f, target / f.name)
            dvc(registry, "add", "-q", path, what=f"dvc add {path}")
            _push(registry, shown_remote)
            git(registry, "add", f"{path}.dvc", str(Path(path).parent / ".gitignore"))
            if git(registry, "status", "--porcelain", "--", f"{path}.dvc").strip():
                git(registry, "commit", "-q", "-m", f"Dataset {version}: {path} ({expected})")
        except BaseException:
            _restore_workspace(registry, path)
            raise
        summary = ", ".join(f"{k} {v} rows" for k, v in rows.items())
        git(registry, "tag", "-a", version, "-m", f"Dataset {version}: {path} {expected} ({summary})")
        commit = tag_commit(registry, version) or ""
        recorded = recorded_hash(registry, path, version)
        if recorded != expected:  # would mean DVC hashes differently from what we compute
            raise StepError(f"DVC recorded {recorded} for {path} but the source hashes to {expected}")
        log.info("published %s at %s (%s) to %s", version, commit[:12], expected, shown_remote)
        return result(commit=commit, created=True, tags=list_tags(registry))


def versions(registry: Path, path: str = DEFAULT_PATH) -> list[dict[str, str]]:
    """Every tag of the registry with its commit and the DVC hash recorded for `path`."""
    registry = Path(registry).expanduser().resolve()
    if not (registry / ".git").exists():
        raise StepError(f"{registry} is not a data registry (no .git)")
    out = []
    for tag in list_tags(registry):
        out.append(
            {
                "tag": tag,
                "commit": tag_commit(registry, tag) or "",
                "dataset_hash": recorded_hash(registry, path, tag) or "",
            }
        )
    return out
