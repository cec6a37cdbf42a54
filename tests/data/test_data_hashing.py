"""The directory hash we compute equals the one DVC records (`dvc add`), with no DVC internals."""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml

from shared.data_registry.gitdvc import dvc
from shared.data_registry.hashing import dvc_dir_hash, file_md5

# Computed with dvc_data's own Tree (dvc-data as pinned by dvc 3.67.1), before we dropped it.
GOLDEN = [
    (
        {
            "train.parquet": "0cc175b9c0f1b6a831c399e269772661",
            "metadata.json": "92eb5ffee6ae2fec3ad71c777531578f",
        },
        "291272c512cb22983a47a3973ae4d220.dir",
    ),
    (
        {
            "b/x.txt": "4a8a08f09d37b73795649038408b5f33",
            "a.txt": "8277e0910d750195b448797616e091ad",
            "b/y/é.txt": "e1671797c52e15f763380b45e841ec32",
            "a b.txt": "d41d8cd98f00b204e9800998ecf8427e",
        },
        "3fb7ef5a17824f8490dabd13a93cefbb.dir",
    ),
]


def test_dir_hash_matches_dvc_data_golden_values():
    for files, expected in GOLDEN:
        assert dvc_dir_hash(files) == expected
        assert dvc_dir_hash(dict(reversed(list(files.items())))) == expected  # order-independent


def test_dir_hash_equals_what_dvc_add_records(tmp_path: Path):
    """Nested folders, a space and a non-ASCII name: the hash in the .dvc file and the name of the
    `.dir` object DVC writes to its cache, whose md5 it is."""
    repo = tmp_path / "repo"
    data = repo / "data"
    for rel, text in {"a.txt": "a", "a b.txt": "", "b/x.txt": "x\n", "b/y/é.txt": "é", "B.txt": "B"}.items():
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).write_text(text, encoding="utf-8")
    dvc(repo, "init", "--no-scm", "-q")
    dvc(repo, "add", "-q", "data")

    recorded = yaml.safe_load((repo / "data.dvc").read_text())["outs"][0]["md5"]
    files = {p.relative_to(data).as_posix(): file_md5(p) for p in data.rglob("*") if p.is_file()}
    assert dvc_dir_hash(files) == recorded
    digest = recorded.removesuffix(".dir")
    listing = repo / ".dvc" / "cache" / "files" / "md5" / digest[:2] / f"{digest[2:]}.dir"
    assert hashlib.md5(listing.read_bytes(), usedforsecurity=False).hexdigest() == digest
