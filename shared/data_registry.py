"""The dataset format, and the command that publishes a dataset version into a DVC data registry.

A *dataset directory* holds one parquet file per split (`train.parquet`, `validation.parquet`,
`test.parquet` if the version has one; columns `text` string and `label` integer) and a
`metadata.json` whose `label_map` maps label ids to names (`{"0": "sadness", ...}`). The
functions here validate that format for every consumer: the registry refuses to publish a bad
dataset, dvc-fetch refuses to hand one on, tokenize refuses to read one.

The *data registry* is a git repository in which each dataset version is a git tag
(`emotion-v1.0.0`) on a commit whose `data/emotion.dvc` records the DVC hash of the dataset
directory; the files themselves live in a DVC remote (a local directory by default, S3 when a
`s3://` URL is given). Building is idempotent, and a new version adds a commit and a tag on
`main` without touching the tags before it:

    python -m shared.data_registry build --source ../shared/data/emotion --registry .local/data-registry
    python -m shared.data_registry build --source my-relabelled-copy --registry .local/data-registry \\
        --version emotion-v1.1.0
    python -m shared.data_registry list --registry .local/data-registry

All git and DVC work goes through the `git` and `dvc` commands (the DVC that is installed next
to this interpreter), with a fallback git identity so it works where none is configured (CI).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from shared.errors import StepError
from shared.object_store import check_s3_uri, is_s3_uri
from shared.settings import Settings

log = logging.getLogger(__name__)

METADATA_FILE = "metadata.json"
REQUIRED_SPLITS = ("train", "validation")
DEFAULT_PATH = "data/emotion"
REMOTE_NAME = "storage"
MAX_ROWS_SHOWN = 5
# Extra files a dataset directory may carry along into the registry (documentation).
EXTRA_FILES = ("README.md",)

# ---------------------------------------------------------------------------------------------
# The dataset format
# ---------------------------------------------------------------------------------------------


@dataclass
class SplitStats:
    """What validation learns about one split: its row count and rows per label id."""

    rows: int = 0
    label_counts: dict[int, int] = field(default_factory=dict)

    def class_counts(self, label_map: dict[int, str]) -> dict[str, int]:
        """Rows per label *name*, in label-id order, zero for a label with no rows."""
        return {name: int(self.label_counts.get(i, 0)) for i, name in sorted(label_map.items())}


def read_metadata(dataset_dir: Path) -> dict[str, Any]:
    path = Path(dataset_dir) / METADATA_FILE
    if not path.is_file():
        raise StepError(f"{path} is missing: a dataset directory needs a metadata.json with a label_map")
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StepError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise StepError(f"{path} must hold a JSON object, not {type(meta).__name__}")
    return meta


def read_label_map(dataset_dir: Path) -> dict[int, str]:
    """The `label_map` of a dataset directory as `{id: name}`, ids in order; StepError if unusable."""
    meta = read_metadata(dataset_dir)
    where = Path(dataset_dir) / METADATA_FILE
    raw = meta.get("label_map")
    if not isinstance(raw, dict) or not raw:
        raise StepError(f'{where}: "label_map" must be a non-empty object such as {{"0": "sadness"}}')
    label_map: dict[int, str] = {}
    for key, name in raw.items():
        try:
            label_id = int(key)
        except (TypeError, ValueError):
            raise StepError(f"{where}: label_map key {key!r} is not an integer label id") from None
        if not isinstance(name, str) or not name.strip():
            raise StepError(f"{where}: label_map[{key!r}] must be a non-empty label name, got {name!r}")
        label_map[label_id] = name
    if len(set(label_map.values())) != len(label_map):
        raise StepError(f"{where}: label_map has duplicate label names: {sorted(label_map.values())}")
    return dict(sorted(label_map.items()))


def split_files(dataset_dir: Path) -> dict[str, Path]:
    """`{split name: parquet path}` for every `<split>.parquet` in the directory, sorted by name."""
    return {p.stem: p for p in sorted(Path(dataset_dir).glob("*.parquet")) if p.is_file()}


def _rows_text(rows: list[int], total: int) -> str:
    shown = ", ".join(str(r) for r in rows[:MAX_ROWS_SHOWN])
    more = f" and {total - MAX_ROWS_SHOWN} more" if total > MAX_ROWS_SHOWN else ""
    return f"row{'s' if total > 1 else ''} {shown}{more} (0-based)"


def validate_split(path: Path, split: str, label_map: dict[int, str], batch_size: int = 65_536) -> SplitStats:
    """Stream one split and check its schema; return its row and label counts.

    `text` must be a non-empty (not all-whitespace) string, `label` an integer that is a key
    of the label map. The error names the split, the field and the first offending rows.
    Reads in batches, so memory stays bounded whatever the split's size.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise StepError(f"split {split!r}: {path} is not a readable parquet file ({exc})") from None
    schema = pf.schema_arrow
    for name in ("text", "label"):
        if name not in schema.names:
            raise StepError(
                f"split {split!r}, field {name!r}: column is missing from {path.name} "
                f"(columns: {', '.join(schema.names) or 'none'})"
            )
    text_type, label_type = schema.field("text").type, schema.field("label").type
    if not (pa.types.is_string(text_type) or pa.types.is_large_string(text_type)):
        raise StepError(f"split {split!r}, field 'text': expected a string column, found {text_type}")
    if not pa.types.is_integer(label_type):
        raise StepError(f"split {split!r}, field 'label': expected an integer column, found {label_type}")

    known = pa.array(sorted(label_map), type=pa.int64())
    stats = SplitStats()
    bad_text: list[int] = []
    bad_text_total = 0
    bad_label: list[tuple[int, Any]] = []
    bad_label_total = 0
    counts: Counter[int] = Counter()
    offset = 0
    for batch in pf.iter_batches(batch_size=batch_size, columns=["text", "label"]):
        text, label = batch.column(0), batch.column(1).cast(pa.int64(), safe=False)
        empty = pc.fill_null(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(text)), 0), True)
        if pc.any(empty).as_py():
            idx = np.flatnonzero(empty.to_numpy(zero_copy_only=False))
            bad_text_total += len(idx)
            bad_text.extend(int(i) + offset for i in idx[: MAX_ROWS_SHOWN - len(bad_text)])
        unknown = pc.invert(pc.fill_null(pc.is_in(label, value_set=known), False))
        if pc.any(unknown).as_py():
            idx = np.flatnonzero(unknown.to_numpy(zero_copy_only=False))
            bad_label_total += len(idx)
            for i in idx[: MAX_ROWS_SHOWN - len(bad_label)]:
                bad_label.append((int(i) + offset, label[int(i)].as_py()))
        for item in pc.value_counts(label.filter(pc.invert(unknown))).to_pylist():
            counts[int(item["values"])] += int(item["counts"])
        offset += batch.num_rows
    stats.rows = offset
    stats.label_counts = dict(sorted(counts.items()))
    if bad_text_total:
        raise StepError(
            f"split {split!r}, field 'text': {bad_text_total} empty or missing text(s) at "
            f"{_rows_text(bad_text, bad_text_total)}; every row needs a non-empty string"
        )
    if bad_label_total:
        shown = ", ".join(f"{r} (label {v!r})" for r, v in bad_label[:MAX_ROWS_SHOWN])
        more = f" and {bad_label_total - MAX_ROWS_SHOWN} more" if bad_label_total > MAX_ROWS_SHOWN else ""
        raise StepError(
            f"split {split!r}, field 'label': {bad_label_total} label(s) not in the label map at rows "
            f"{shown}{more} (0-based); allowed: {sorted(label_map)} ({', '.join(label_map.values())})"
        )
    if stats.rows == 0:
        raise StepError(f"split {split!r}: {path.name} has no rows")
    return stats


def validate_dataset(
    dataset_dir: Path, required_splits: tuple[str, ...] | list[str] = REQUIRED_SPLITS
) -> tuple[dict[int, str], dict[str, SplitStats]]:
    """Check a dataset directory (label map, required splits, every split's schema).

    Returns the label map and per-split statistics; raises StepError naming the problem.
    """
    dataset_dir = Path(dataset_dir)
    if not dataset_dir.is_dir():
        raise StepError(f"dataset directory {dataset_dir} does not exist")
    label_map = read_label_map(dataset_dir)
    splits = split_files(dataset_dir)
    missing = [s for s in required_splits if s not in splits]
    if missing:
        raise StepError(
            f"required split(s) {', '.join(missing)} missing from {dataset_dir} "
            f"(expected {', '.join(f'{s}.parquet' for s in missing)}; "
            f"found: {', '.join(splits) or 'no splits'})"
        )
    stats = {name: validate_split(path, name, label_map) for name, path in splits.items()}
    return label_map, stats


def check_metadata_matches(dataset_dir: Path, stats: dict[str, SplitStats]) -> None:
    """Where metadata.json states a split's rows or sha256, they must match the files.

    A registry version is trusted as it is described; metadata that lies is caught here, before
    it is published, with a message saying what to fix.
    """
    meta = read_metadata(dataset_dir)
    described = meta.get("splits") or {}
    for split, info in described.items():
        if not isinstance(info, dict):
            continue
        path = Path(dataset_dir) / f"{split}.parquet"
        if split not in stats:
            raise StepError(
                f"{dataset_dir / METADATA_FILE} describes split {split!r} but {path.name} is missing"
            )
        if "rows" in info and int(info["rows"]) != stats[split].rows:
            raise StepError(
                f"{dataset_dir / METADATA_FILE}: splits.{split}.rows says {info['rows']} but {path.name} "
                f"has {stats[split].rows} rows; update metadata.json to describe the data"
            )
        if info.get("sha256") and info["sha256"] != file_sha256(path):
            raise StepError(
                f"{dataset_dir / METADATA_FILE}: splits.{split}.sha256 does not match {path.name}; "
                "update metadata.json (or remove the field) so it describes the data"
            )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_md5(path: Path) -> str:
    """The hash DVC 3 records for a file (`md5` of its bytes)."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def dvc_dir_hash(files: dict[str, str]) -> str:
    """The DVC hash of a directory (`<md5>.dir`) from `{relative path: file md5}`.

    Computed with DVC's own tree object, so it equals what `dvc add` records.
    """
    from dvc_data.hashfile.hash_info import HashInfo
    from dvc_data.hashfile.meta import Meta
    from dvc_data.hashfile.tree import Tree

    tree = Tree()
    for relpath, md5 in sorted(files.items()):
        tree.add(tuple(relpath.split("/")), Meta(), HashInfo("md5", md5))
    tree.digest()
    return tree.hash_info.value


def atomic_replace_dir(new: Path, dest: Path) -> None:
    """Put the finished directory `new` at `dest` (replacing what was there) by renames only.

    `new` must be on the same filesystem (a sibling made by `sibling_tmp_dir`). Readers see the
    old directory or the whole new one, never a half-written one.
    """
    new, dest = Path(new), Path(dest)
    old = None
    if dest.exists() or dest.is_symlink():
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}-{os.urandom(3).hex()}")
        os.replace(dest, old)
    try:
        os.replace(new, dest)
    except BaseException:
        if old is not None:
            os.replace(old, dest)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)


@contextlib.contextmanager
def sibling_tmp_dir(dest: Path) -> Iterator[Path]:
    """A temporary directory next to `dest` (same filesystem), removed on exit whatever happens."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# git and dvc commands
# ---------------------------------------------------------------------------------------------

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


def _tag_commit(repo: Path, tag: str) -> str | None:
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


# ---------------------------------------------------------------------------------------------
# Building the registry
# ---------------------------------------------------------------------------------------------


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
            endpoint = (
                inp.remote_endpoint
                or os.environ.get("MLFLOW_S3_ENDPOINT_URL")
                or os.environ.get("AWS_ENDPOINT_URL_S3")
                or os.environ.get("AWS_ENDPOINT_URL")
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

        commit = _tag_commit(registry, version)
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
        commit = _tag_commit(registry, version) or ""
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
                "commit": _tag_commit(registry, tag) or "",
                "dataset_hash": recorded_hash(registry, path, tag) or "",
            }
        )
    return out


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def _app():
    import typer

    app = typer.Typer(
        add_completion=False, no_args_is_help=True, help="Build and inspect the DVC data registry."
    )

    @app.callback()
    def _main() -> None:
        """Build and inspect the DVC data registry (one git tag per dataset version)."""

    @app.command("build")
    def build_cmd(
        source: Path = typer.Option(..., help="dataset directory: <split>.parquet files + metadata.json"),
        registry: Path = typer.Option(..., help="the registry git repository (created if missing)"),
        remote: str | None = typer.Option(
            None, help="DVC remote: a directory or s3://bucket/prefix (default: <registry>/../dvc-remote)"
        ),
        remote_endpoint: str | None = typer.Option(
            None, help="S3 endpoint URL (MinIO) (default: $MLFLOW_S3_ENDPOINT_URL or $AWS_ENDPOINT_URL)"
        ),
        version: str | None = typer.Option(
            None, help="the version tag (default: emotion-v<metadata.json version>)"
        ),
        path: str = typer.Option(DEFAULT_PATH, help="where the dataset lives inside the registry"),
        result_file: Path | None = typer.Option(None, help="also write the result JSON here"),
    ) -> None:
        """Publish a dataset directory as a version (git tag) of the registry; idempotent."""
        from shared.cli import run_step

        result = run_step(
            "data-registry",
            lambda: build(
                BuildInput(
                    source=source,
                    registry=registry,
                    remote=remote,
                    remote_endpoint=remote_endpoint,
                    version=version,
                    path=path,
                )
            ),
            None,
        )
        if result_file is not None:
            from shared.results import write_result

            write_result(result, result_file)
        state = "published" if result.created else "already published"
        typer.echo(
            f"{result.version} {state}: commit {result.commit[:12]}, {result.path} {result.dataset_hash}, "
            f"remote {result.remote}; versions: {', '.join(result.tags)}"
        )

    @app.command("list")
    def list_cmd(
        registry: Path = typer.Option(..., help="the registry git repository"),
        path: str = typer.Option(DEFAULT_PATH, help="the dataset path inside the registry"),
    ) -> None:
        """List the dataset versions (tags) with their commits and DVC hashes."""
        from shared.cli import run_step

        class _Versions(BaseModel):
            versions: list[dict[str, str]]

        result = run_step("data-registry", lambda: _Versions(versions=versions(registry, path)), None)
        for v in result.versions:
            typer.echo(f"{v['tag']}\t{v['commit'][:12]}\t{v['dataset_hash']}")

    return app


def main() -> None:
    _app()()


if __name__ == "__main__":
    main()
