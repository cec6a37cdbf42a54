"""Template-level `synchronization` locally: Argo's mutexes and semaphores as file locks.

A step whose template declares `synchronization.mutexes` (Argo 4; `mutex` before it) or
`semaphores` (`semaphore`) waits until it holds every lock, runs (all its attempts), then
releases them. The locks are `flock`s on files in `<local dir>/locks/`, so concurrent local runs
of the same checkout (the same local dir) serialize as workflows on one cluster do; a lock held
by a process that died is free again (the kernel drops it). A semaphore's limit is its config
map key (from `--values-dir`), as on a cluster.
"""

from __future__ import annotations

import contextlib
import fcntl
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from pipelines.local_runner.errors import WorkflowError
from pipelines.local_runner.pod import read_value
from pipelines.local_runner.substitution import substitute

POLL_S = 0.2


def _substituted(value, variables: dict[str, str], where: str):
    if isinstance(value, str):
        return substitute(value, variables, where)
    if isinstance(value, dict):
        return {k: _substituted(v, variables, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_substituted(v, variables, where) for v in value]
    return value


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def requested(
    sync: dict | None, variables: dict[str, str], values_dir: Path | None, where: str
) -> list[tuple[str, int]]:
    """(lock name, limit) per mutex (limit 1) and semaphore declared, placeholders substituted (a
    mutex named after a parameter)."""
    if not sync:
        return []
    sync = _substituted(sync, variables, where)
    mutexes = list(sync.get("mutexes") or []) + ([sync["mutex"]] if sync.get("mutex") else [])
    semaphores = list(sync.get("semaphores") or []) + ([sync["semaphore"]] if sync.get("semaphore") else [])
    locks = [(f"mutex-{m['name']}", 1) for m in mutexes]
    for sem in semaphores:
        ref = sem.get("configMapKeyRef")
        if not ref:
            raise WorkflowError(f"{where}: only configMapKeyRef semaphores run locally")
        text = read_value(values_dir, "configMapKeyRef", ref["name"], ref["key"], False, f"{where} semaphore")
        try:
            limit = int(str(text).strip())
        except ValueError:
            raise WorkflowError(f"{where}: semaphore {ref['name']}/{ref['key']} is not an integer") from None
        locks.append((f"semaphore-{ref['name']}-{ref['key']}", max(1, limit)))
    return locks


@contextlib.contextmanager
def holding(
    locks: list[tuple[str, int]],
    locks_dir: Path,
    stopping: threading.Event,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[bool]:
    """Hold every lock (waiting for each in name order); yields False if stopped while waiting."""
    held: list = []
    try:
        for name, limit in sorted(locks):
            handle = _acquire(Path(locks_dir), name, limit, stopping, on_wait)
            if handle is None:
                yield False
                return
            held.append(handle)
        yield True
    finally:
        for handle in reversed(held):
            handle.close()  # closing the file releases its flock


def _acquire(locks_dir: Path, name: str, limit: int, stopping: threading.Event, on_wait):
    locks_dir.mkdir(parents=True, exist_ok=True)
    waited = False
    while not stopping.is_set():
        for slot in range(limit):
            handle = open(locks_dir / f"{_safe(name)}.{slot}.lock", "a+")  # noqa: SIM115 - held while running
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return handle
            except BlockingIOError:
                handle.close()
        if not waited and on_wait is not None:
            on_wait(name)
        waited = True
        stopping.wait(POLL_S)
    return None
