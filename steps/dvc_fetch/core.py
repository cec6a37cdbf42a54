"""dvc-fetch core: one dataset version out of the DVC data registry, verified and validated.

It opens the registry at a rev through DVC's repo API (what `dvc get` does: a local registry is
read in place, a git URL is cloned), downloads the dataset directory from DVC's cache or remote
into a temporary sibling of the output dir, checks every file against the md5 DVC recorded for
it and the directory against its recorded `.dir` hash, validates the schema, and only then
renames the directory into place. Any failure leaves the output dir as it was.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from shared.data_registry.atomic import atomic_replace_dir, sibling_tmp_dir
from shared.data_registry.format import validate_dataset
from shared.data_registry.hashing import dvc_dir_hash, file_md5
from shared.errors import StepError, TransientError
from shared.failures import is_transient
from shared.object_store import check_dvc_remote
from shared.progress import NO_PROGRESS, Progress
from steps.dvc_fetch.contract import FetchInput, FetchResult

log = logging.getLogger(__name__)


def _open_repo(url: str, rev: str | None, remote: str | None):
    """DVC's repo API, as `dvc get` uses it; registry and rev errors become StepErrors."""
    from dvc.exceptions import DvcException, NotDvcRepoError
    from dvc.repo import Repo
    from dvc.scm import CloneError, RevError, SCMError

    try:
        return Repo.open(url=url, rev=rev, subrepos=True, uninitialized=True, remote=remote)
    except RevError:
        tags = _available_tags(url)
        listed = ", ".join(tags) if tags else "none (the registry has no dataset tags yet)"
        raise StepError(
            f"rev {rev!r} does not exist in data registry {url}; available dataset tags: {listed}"
        ) from None
    except (CloneError, NotDvcRepoError, SCMError) as exc:
        if not _looks_remote(url) and not Path(url).exists():
            where = "no such directory"
        else:
            where = re.sub(r" to '[^']*'$", "", str(exc.__cause__ or exc)).replace("Failed to", "failed to")
        error = TransientError if _looks_remote(url) and _remote_is_down(exc) else StepError
        raise error(
            f"data registry {url} is unreachable or not a git repository ({where}); "
            "check --registry-url (build a local one with `make registry`)"
        ) from None
    except DvcException as exc:
        raise StepError(f"cannot open data registry {url} at {rev!r}: {exc}") from None


# What git says when a remote registry is down for now (not: wrong URL, no such repository).
_TRANSIENT_GIT = re.compile(
    r"Connection refused|Connection reset|timed out|Could not resolve host|Failed to connect|"
    r"unexpected http resp(?:onse)? (?:429|5\d\d)|"
    r"The requested URL returned error: (?:429|5\d\d)|early EOF|unexpected disconnect|HTTP (?:429|5\d\d)",
    re.IGNORECASE,
)


def _remote_is_down(exc: BaseException) -> bool:
    if is_transient(exc):
        return True
    text, item = [], exc
    while item is not None and len(text) < 20:
        text.append(str(item))
        item = item.__cause__ or item.__context__
    return bool(_TRANSIENT_GIT.search(" ".join(text)))


def _looks_remote(url: str) -> bool:
    return "://" in url or (":" in url and not Path(url).exists() and "@" in url)


def _natural_key(tag: str) -> list:
    """emotion-v1.10.0 sorts after emotion-v1.9.0."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", tag)]


def _available_tags(url: str) -> list[str]:
    from dvc.exceptions import DvcException

    try:
        with _open_repo(url, None, None) as repo:
            return sorted(repo.scm.list_tags(), key=_natural_key)
    except (DvcException, StepError):
        return []


def _recorded_tree(repo, path: str) -> tuple[str, dict[str, str]]:
    """(dataset directory hash, {relative file path: md5}) as DVC recorded them at this rev."""
    fs = repo.dvcfs
    try:
        info = fs.info(path)
    except FileNotFoundError:
        raise StepError(f"{path!r} does not exist in the registry at this rev") from None
    dir_hash = (info.get("dvc_info") or {}).get("md5") or info.get("md5")
    if info.get("type") != "directory" or not dir_hash:
        raise StepError(f"{path!r} in the registry is not a DVC-tracked dataset directory")
    files: dict[str, str] = {}
    try:
        for name in fs.find(path):
            finfo = fs.info(name)
            md5 = (finfo.get("dvc_info") or {}).get("md5") or finfo.get("md5")
            files[name[len(path) :].lstrip("/")] = md5
    except Exception as exc:
        # DVC wraps "the .dir listing is in neither cache nor remote" in its own error type, with
        # the FileNotFoundError as the cause; anything else (a bug, a transient fault) goes on.
        if not _caused_by(exc, FileNotFoundError):
            raise
        raise StepError(
            f"the file list of {path!r} (DVC object {dir_hash}) is missing from the registry's cache "
            f"and its DVC remote {_remote_url(repo)}: the version was not pushed completely, "
            "or the remote lost it"
        ) from None
    return dir_hash, files


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen = 0
    item: BaseException | None = exc
    while item is not None and seen < 20:
        if isinstance(item, kind):
            return True
        item, seen = item.__cause__ or item.__context__, seen + 1
    return False


def _remote_url(repo) -> str:
    try:
        name = repo.config["core"].get("remote")
        return str(repo.config["remote"][name]["url"]) if name else "no default remote configured"
    except (KeyError, TypeError):
        return "unknown remote"


def _download(repo, path: str, files: dict[str, str], out: Path, jobs: int | None) -> None:
    from dvc.exceptions import DvcException
    from dvc.fs import download

    try:
        download(repo.dvcfs, path, str(out), jobs=jobs)
    except FileNotFoundError as exc:
        missing = str(exc.filename or exc)
        rel = missing[len(path) :].lstrip("/") if missing.startswith(path) else missing
        md5 = files.get(rel)
        raise StepError(
            f"{missing} (md5 {md5}) is missing from the registry's cache and its DVC remote "
            f"{_remote_url(repo)}: the version was not pushed completely, or the remote lost it"
        ) from None
    except DvcException as exc:
        raise StepError(f"downloading {path} from DVC remote {_remote_url(repo)} failed: {exc}") from None
    except OSError as exc:
        raise StepError(f"downloading {path} from DVC remote {_remote_url(repo)} failed: {exc}") from None


def _verify(out: Path, dir_hash: str, files: dict[str, str]) -> None:
    """Every file's md5 and the directory hash must equal what DVC recorded."""
    got = {p.relative_to(out).as_posix(): file_md5(p) for p in sorted(out.rglob("*")) if p.is_file()}
    for rel, md5 in sorted(files.items()):
        if rel not in got:
            raise StepError(f"{rel} (md5 {md5}) was not downloaded")
        if got[rel] != md5:
            raise StepError(
                f"{rel}: content hash {got[rel]} does not match the md5 DVC recorded ({md5}); "
                "the cache or remote copy is corrupt"
            )
    extra = sorted(set(got) - set(files))
    if extra:
        raise StepError(f"unexpected files not recorded by DVC: {', '.join(extra)}")
    if dvc_dir_hash(got) != dir_hash:
        raise StepError(f"dataset directory hash {dvc_dir_hash(got)} does not match the recorded {dir_hash}")


def fetch(inp: FetchInput, progress: Progress = NO_PROGRESS) -> FetchResult:
    """Fetch `inp.data_path` at `inp.data_version` from the registry into `inp.output_dir`, all or nothing.

    `progress`: the dataset's files downloaded, out of the files DVC recorded."""
    path = inp.data_path.strip("/")
    url = inp.registry_url
    output_dir = Path(inp.output_dir)
    with _open_repo(url, inp.data_version, inp.remote) as repo:
        commit = repo.get_rev()
        remote_name = inp.remote or repo.config["core"].get("remote")
        if remote_name and remote_name in repo.config["remote"]:
            check_dvc_remote(repo.config["remote"][remote_name])  # names endpoint + bucket, before work
        try:
            dir_hash, files = _recorded_tree(repo, path)
        except StepError as exc:
            raise StepError(f"data registry {url} at {inp.data_version} ({commit[:12]}): {exc}") from None
        log.info(
            "registry %s at %s = %s: %s is %s (%d files)",
            url,
            inp.data_version,
            commit[:12],
            path,
            dir_hash,
            len(files),
        )
        with sibling_tmp_dir(output_dir) as tmp:
            staged = tmp / "dataset"
            progress.set_total(len(files))
            with progress.polling(lambda: sum((staged / rel).is_file() for rel in files)):
                _download(repo, path, files, staged, inp.jobs)
            _verify(staged, dir_hash, files)
            try:
                label_map, stats = validate_dataset(staged, inp.required_splits)
            except StepError as exc:
                raise StepError(f"dataset {inp.data_version} ({path} in {url}) is invalid: {exc}") from None
            atomic_replace_dir(staged, output_dir)
    result = FetchResult(
        registry_url=url,
        data_version=inp.data_version,
        data_path=path,
        commit=commit,
        resolved_commit=commit,
        dataset_hash=dir_hash,
        output_dir=str(output_dir),
        splits=list(stats),
        rows={name: s.rows for name, s in stats.items()},
        class_counts={name: s.class_counts(label_map) for name, s in stats.items()},
    )
    rows = ", ".join(f"{k} {v}" for k, v in result.rows.items())
    progress.finish()
    log.info("fetched %s (%s): %s", inp.data_version, dir_hash, rows)
    return result
