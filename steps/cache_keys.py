"""Memoization keys for the dvc-fetch and tokenize tasks, computed by the workflow's first task.

Argo's memoization cache only accepts keys matching ``^[a-zA-Z0-9][-a-zA-Z0-9]*$``, so parameter
values such as ``emotion-v1.0.0`` or a model id with ``/`` cannot go into a key verbatim, and
expression tags (``{{=sprig...}}``) in memoize keys are unreliable on Argo and unsupported by the
local runner. This task hashes each step's inputs into a key-safe string instead:

    python -m steps.cache_keys --registry-url URL --data-version V --data-path P --model M \
        --max-length N --limit N --eval-limit N --seed S --image-tag T --result-dir DIR

writes ``DIR/dvc-fetch`` and ``DIR/tokenize`` (plus ``result.json``).

Keys are content keys, never names that move:

- the data: the commit ``--data-version`` resolves to in the registry *now* (``git ls-remote``),
  not the revision string, so ``main`` after a new commit is a new key;
- the code: the commit of the code that runs (``GIT_COMMIT`` baked into the image, or the git
  checkout the local runner runs) together with the image tag. A mutable tag (``DEV``,
  ``latest``, empty) can point at other code in the next pod, so in an image it disables
  memoization; the local runner runs the checkout itself, so there a clean commit is enough.

When a key cannot be content-based (mutable tag in an image, unknown or uncommitted code, a
revision that does not resolve), the key is ``nomemo-<step>-<hash of the workflow uid>``: it never
matches another workflow's entry (a retry inside the same workflow may still reuse it), and the
local runner neither looks it up nor stores it (`pipelines/local_runner/cache.py`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import subprocess
from pathlib import Path

from pydantic import BaseModel

from shared.environment import PlatformEnvironment
from shared.lineage import code_version
from shared.results import write_result
from shared.settings import Settings

log = logging.getLogger(__name__)

# bump to invalidate every cached output (e.g. when an output format changes);
# v2: content keys (data commit, code version), and the tokenize output gained the tune split
KEY_VERSION = "v2"
NO_MEMO_PREFIX = "nomemo-"  # a key that means "do not memoize" (see the module docstring)
MUTABLE_TAGS = frozenset({"", "dev", "latest"})  # compared lower-case
_COMMIT = re.compile(r"[0-9a-f]{40}")
ARGO_KEY = re.compile(r"^[a-zA-Z0-9][-a-zA-Z0-9]*$")  # workflow/controller/cache/cache.go
# The flags this task takes: workflow parameters of the same names (the workflow passes each one).
INPUTS = (
    "registry-url",
    "data-version",
    "data-path",
    "model",
    "max-length",
    "limit",
    "eval-limit",
    "seed",
    "image-tag",
)


class CacheKeys(BaseModel):
    dvc_fetch: str
    tokenize: str
    data_commit: str  # the commit --data-version resolved to ("" when it did not resolve)
    code_version: str  # the code the key is for ("" when memoization is off)
    memoized: bool


def _digest(prefix: str, values: dict[str, str]) -> str:
    text = json.dumps({"version": KEY_VERSION, **values}, sort_keys=True)
    return f"{prefix}-{hashlib.sha256(text.encode()).hexdigest()[:40]}"


def resolve_revision(registry_url: str, revision: str, timeout: float = 60.0) -> str | None:
    """The commit `revision` (branch, tag or commit) of the registry repo points at now, or None."""
    if _COMMIT.fullmatch(revision):
        return revision
    try:
        out = subprocess.run(
            ["git", "ls-remote", registry_url, revision, f"{revision}^{{}}"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("cannot resolve %s at %s: %s", revision, registry_url, exc)
        return None
    refs = dict(reversed(line.split("\t", 1)) for line in out.splitlines() if "\t" in line)
    for ref in (f"refs/tags/{revision}^{{}}", f"refs/tags/{revision}", f"refs/heads/{revision}", revision):
        if ref in refs and _COMMIT.fullmatch(refs[ref]):
            return refs[ref]
    peeled = [sha for ref, sha in refs.items() if ref.endswith("^{}")]
    candidates = peeled or list(refs.values())
    return candidates[0] if len(set(candidates)) == 1 else None


def code_identity(image_tag: str, code: str, *, in_image: bool) -> str | None:
    """What identifies the code of the steps, or None when nothing safe does (do not memoize)."""
    clean_commit = bool(_COMMIT.fullmatch(code))
    if image_tag.lower() not in MUTABLE_TAGS:
        return f"{image_tag}@{code}"  # an immutable tag (a commit or release tag) names one image
    if clean_commit and not in_image:
        return code  # the local runner: the steps run this very checkout
    return None


def cache_keys(
    *,
    registry_url: str,
    data_version: str,
    data_path: str,
    model: str,
    max_length: str,
    limit: str,
    eval_limit: str,
    seed: str,
    image_tag: str,
    data_commit: str | None = None,
    code: str | None = None,
    in_image: bool | None = None,
    workflow_uid: str | None = None,
) -> CacheKeys:
    """Keys that change whenever anything the step's output depends on changes (data commit, code)."""
    if data_commit is None:
        data_commit = resolve_revision(registry_url, data_version)
    code = code_version() if code is None else code
    in_image = bool(PlatformEnvironment().git_commit) if in_image is None else in_image
    identity = code_identity(image_tag, code, in_image=in_image)
    if identity is None or not data_commit:
        uid = workflow_uid or Settings().argo_workflow_uid
        why = (
            "the data revision did not resolve"
            if not data_commit
            else f"code {code!r} under tag {image_tag!r}"
        )
        log.warning("memoization off for this workflow: %s", why)
        tail = hashlib.sha256(uid.encode()).hexdigest()[:32]
        return CacheKeys(
            dvc_fetch=f"{NO_MEMO_PREFIX}dvc-fetch-{tail}",
            tokenize=f"{NO_MEMO_PREFIX}tokenize-{tail}",
            data_commit=data_commit or "",
            code_version="",
            memoized=False,
        )
    fetch = {
        "registry_url": registry_url,
        "data_commit": data_commit,
        "data_path": data_path,
        "code": identity,
    }
    tokenize = {
        **fetch,
        "model": model,
        "max_length": max_length,
        "limit": limit,
        "eval_limit": eval_limit,
        "seed": seed,
    }
    return CacheKeys(
        dvc_fetch=_digest("dvc-fetch", fetch),
        tokenize=_digest("tokenize", tokenize),
        data_commit=data_commit,
        code_version=identity,
        memoized=True,
    )


def main(argv: list[str] | None = None) -> CacheKeys:
    parser = argparse.ArgumentParser(prog="python -m steps.cache_keys", description=__doc__.split("\n")[0])
    for flag in INPUTS:
        parser.add_argument(f"--{flag}", required=True)
    parser.add_argument("--result-dir", type=Path, required=True)
    args = vars(parser.parse_args(argv))
    result_dir = args.pop("result_dir")
    keys = cache_keys(**args)
    write_result(keys, result_dir / "result.json", params_dir=result_dir)
    print(keys.model_dump_json())
    return keys


if __name__ == "__main__":
    main()
