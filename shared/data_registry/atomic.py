"""Publishing a directory atomically: build it in a sibling temporary folder, then rename."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


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
