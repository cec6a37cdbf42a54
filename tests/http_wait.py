"""Wait for a server a test started as a subprocess: poll an HTTP endpoint, fail with its log's tail."""

from __future__ import annotations

import subprocess
from pathlib import Path

from shared.processes import NotReady, log_tail, wait_http

__all__ = ["log_tail", "wait_http_ok"]


def wait_http_ok(
    url: str, proc: subprocess.Popen, log_path: Path, timeout_s: float, poll_s: float = 0.3
) -> None:
    """Poll `GET url` until it answers 200. Raise RuntimeError with the tail of the process's log
    when the process exits first or `timeout_s` runs out."""
    try:
        wait_http(url, timeout_s, alive=lambda: proc.poll() is None, poll_s=poll_s, request_timeout_s=2)
    except NotReady as exc:
        raise RuntimeError(f"{exc}\n{log_tail(log_path)}") from None
