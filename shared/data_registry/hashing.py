"""File hashes: sha256 (metadata.json checksums), md5 and the directory hash DVC records."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


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

    DVC lists a directory in a `.dir` object, a JSON list of `{"md5", "relpath"}` entries sorted
    by path, and hashes it as the md5 of that JSON (dvc.org/doc/user-guide/project-structure/
    internal-files#directories). The serialization is DVC's `json.dumps(..., sort_keys=True)`;
    tests/data/test_data_hashing.py checks the result against what `dvc add` records.
    """
    listing = [{"md5": md5, "relpath": relpath} for relpath, md5 in sorted(files.items())]
    encoded = json.dumps(listing, sort_keys=True).encode("utf-8")
    return hashlib.md5(encoded, usedforsecurity=False).hexdigest() + ".dir"
