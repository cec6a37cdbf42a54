"""Memoization: a task whose template and resolved inputs are unchanged is served from `.local/cache/`.

The key hashes the template (as written, minus `memoize`), the substituted `memoize.key`, the
resolved input parameters, the values of workflow parameters the template reads directly, and the
content of every input artifact. An entry holds the output parameters, stdout and a copy of each
output artifact (hard links where possible); a hit links them into the new task's folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from pathlib import Path

from shared.results import atomic_write_text

NO_MEMO_PREFIX = "nomemo-"  # a memoize key meaning "do not memoize" (steps/cache_keys.py)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str | int | float | None) -> float | None:
    """Seconds in an Argo/Go duration (`90`, `10s`, `1m30s`, `2h`); None when unset."""
    if text is None or text == "":
        return None
    if isinstance(text, (int, float)) or str(text).replace(".", "", 1).isdigit():
        return float(text)
    total, pos = 0.0, 0
    for match in _DURATION.finditer(str(text)):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(str(text)):
        raise ValueError(f"invalid duration {text!r} (examples: 30, 10s, 1m30s, 2h)")
    return total


def hash_path(path: Path) -> str:
    """Content hash of a file or a folder tree (relative names and bytes, not timestamps)."""
    digest = hashlib.sha256()
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        digest.update(str(file.relative_to(path) if file != path else "").encode() + b"\0")
        with open(file, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def cache_key(
    template: dict,
    memo_key: str,
    inputs: dict[str, str],
    globals_used: dict[str, str],
    artifact_hashes: dict[str, str],
) -> str:
    body = {k: v for k, v in template.items() if k != "memoize"}
    blob = json.dumps([body, memo_key, inputs, globals_used, artifact_hashes], sort_keys=True, default=str)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:32]
    return NO_MEMO_PREFIX + digest if str(memo_key).startswith(NO_MEMO_PREFIX) else digest


def link_tree(src: Path, dst: Path) -> None:
    """Copy `src` (file or folder) to `dst`, hard-linking files when the filesystem allows."""
    dst.parent.mkdir(parents=True, exist_ok=True)

    def copy(s: str, d: str) -> None:
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    if src.is_dir():
        shutil.copytree(src, dst, copy_function=copy, symlinks=False, dirs_exist_ok=True)
    else:
        copy(str(src), str(dst))


class Cache:
    def __init__(self, root: Path):
        self.root = Path(root)

    def lookup(self, key: str, max_age: float | None = None) -> dict | None:
        entry_file = self.root / key / "entry.json"
        if key.startswith(NO_MEMO_PREFIX) or not entry_file.is_file():
            return None
        entry = json.loads(entry_file.read_text())
        if max_age is not None and time.time() - entry["created_at"] > max_age:
            return None
        for name in entry["artifacts"]:
            if not (self.root / key / "artifacts" / name).exists():
                return None
        return entry

    def artifact_path(self, key: str, name: str) -> Path:
        return self.root / key / "artifacts" / name

    def store(
        self, key: str, task: str, parameters: dict[str, str], result: str | None, artifacts: dict[str, Path]
    ) -> None:
        """Write an entry atomically: build it in a temporary folder, then rename it into place."""
        if key.startswith(NO_MEMO_PREFIX):
            return
        final = self.root / key
        tmp = self.root / f".{key}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "artifacts").mkdir(parents=True)
        for name, path in artifacts.items():
            link_tree(Path(path), tmp / "artifacts" / name)
        entry = {
            "task": task,
            "created_at": time.time(),
            "parameters": parameters,
            "result": result,
            "artifacts": sorted(artifacts),
        }
        atomic_write_text(tmp / "entry.json", json.dumps(entry, indent=2, sort_keys=True))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
