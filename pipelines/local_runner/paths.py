"""Map a template's absolute container paths into the task's folder under the run.

Every absolute path a template declares (artifact paths, output parameter `valueFrom.path`) lives
under `<task dir>/fs/<path>` locally. Occurrences of those paths - and of paths beneath them or
their parent folders (`--result-dir /tmp/result` for `/tmp/result/version`) - in command, args,
env values and script source are rewritten to the local paths. Host paths elsewhere stay as they are.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

# An absolute path not preceded by a path/URL character (so `sqlite:////x` and `http://h/x` stay).
_ABS_PATH = re.compile(r"(?<![\w./:~-])/[\w.@+-]+(?:/[\w.@+-]+)*/?")


def declared_paths(template: dict) -> list[str]:
    """The absolute container paths a template declares for its inputs and outputs."""
    paths: list[str] = []
    for section in ("inputs", "outputs"):
        spec = template.get(section, {})
        for artifact in spec.get("artifacts", []):
            if artifact.get("path"):
                paths.append(artifact["path"])
        for param in spec.get("parameters", []):
            value_from = param.get("valueFrom") or {}
            if value_from.get("path"):
                paths.append(value_from["path"])
    return [p for p in paths if p.startswith("/")]


def _parts(path: str) -> tuple[str, ...]:
    return PurePosixPath(path).parts[1:]


class PathMap:
    """Rewrites container paths related to the declared ones into `root`.

    Mapped: a declared path, its parent folder (unless that is a top folder such as `/tmp`), anything
    beneath either (a step's `result.json` next to its declared output files), and the folders above
    a declared path (`mkdir -p /tmp/a` for `/tmp/a/b/file`), again except top folders.
    """

    def __init__(self, root: Path, declared: Iterable[str]):
        self.root = Path(root)
        self.declared = [_parts(p) for p in declared]
        self.roots = set(self.declared) | {d[:-1] for d in self.declared if len(d) > 2}

    def local(self, container_path: str) -> Path:
        return self.root.joinpath(*_parts(container_path))

    def is_mapped(self, container_path: str) -> bool:
        parts = _parts(container_path)
        if any(parts[: len(root)] == root for root in self.roots):
            return True
        return len(parts) >= 2 and any(declared[: len(parts)] == parts for declared in self.declared)

    def rewrite(self, text: str) -> str:
        def replace(match: re.Match[str]) -> str:
            path = match.group(0)
            if not self.is_mapped(path.rstrip("/")):
                return path
            local = str(self.local(path.rstrip("/")))
            return local + "/" if path.endswith("/") and len(path) > 1 else local

        return _ABS_PATH.sub(replace, text)


def task_folder(node: str) -> str:
    """A node's folder name under `<run>/tasks/`: shell-safe, since its paths go into commands
    (`hello(0:a b)` -> `hello-0-a-b-<hash>`); a plain name such as `hpo` stays as it is."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", node).strip("-")
    if safe == node:
        return node
    return f"{safe[:80]}-{hashlib.sha1(node.encode()).hexdigest()[:8]}"
