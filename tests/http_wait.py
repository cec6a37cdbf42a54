"""Wait for a server a test started as a subprocess: poll an HTTP endpoint, fail with its log's tail."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path


def log_tail(log_path: Path, chars: int = 4000) -> str:
    return Path(log_path).read_text(errors="replace")[-chars:] if Path(log_path).exists() else ""


def wait_http_ok(
    url: str, proc: subprocess.Popen, log_path: Path, timeout_s: float, poll_s: float = 0.3
) -> None:
    """Poll `GET url` until it answers 200. Raise RuntimeError with the tail of the process's log
    when the process exits first or `timeout_s` runs out."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server for {url} exited with code {proc.returncode}:\n{log_tail(log_path)}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(poll_s)
    raise RuntimeError(f"{url} did not answer 200 within {timeout_s:.0f}s:\n{log_tail(log_path)}")
