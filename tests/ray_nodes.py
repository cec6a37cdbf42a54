"""What tests that start Ray nodes on this machine share."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

NODE_MEMORY = {"object_store_memory": 100 * 1024**2}


@contextmanager
def node_environment(values: dict[str, str]) -> Iterator[None]:
    """os.environ with `values` while Ray node processes are spawned (they inherit it), then back."""
    saved = dict(os.environ)
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
