"""Process and HTTP helpers used by the local runner, deploy, tests and benchmarks alike.

One free-port picker, one readiness poll, one process-group terminator and one log tail, so
their fixes (reap before re-signalling, fail early when the process died, name the last answer)
reach every caller.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_free(host: str, port: int) -> bool:
    """Whether a server could bind `host:port` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def terminate_group(pgid: int, grace: float = 5.0, proc: subprocess.Popen | None = None) -> None:
    """SIGTERM a process group, then SIGKILL whatever is still there after `grace` seconds.

    `proc`, the group's leader when it is our child, is reaped while waiting: an unreaped (zombie)
    leader keeps the group "alive", which would make every stop wait the full grace time. (Only
    through `proc`: reaping by pid behind a `Popen`'s back would steal its exit status.)
    """
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if proc is not None:
            proc.poll()
        if not group_alive(pgid):
            return
        time.sleep(0.02)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def log_tail(path: Path, chars: int = 4000) -> str:
    """The last `chars` characters of a log file ('' when it does not exist)."""
    try:
        return Path(path).read_text(errors="replace")[-chars:]
    except OSError:
        return ""


class NotReady(RuntimeError):
    """A server did not become ready: its process exited, it reported a failure, or time ran out."""


def wait_http(
    url: str,
    timeout_s: float,
    *,
    alive: Callable[[], bool] | None = None,
    failed: Callable[[object], bool] | None = None,
    poll_s: float = 0.25,
    request_timeout_s: float = 5.0,
) -> None:
    """Poll `GET url` until it answers 200.

    Raises `NotReady` naming the last answer when `alive()` turns false (the process died),
    `failed(response)` is true (the server says it will never be ready), or `timeout_s` passes.
    """
    import httpx

    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    while True:
        if alive is not None and not alive():
            raise NotReady(f"the server process exited before {url} answered 200 ({last})")
        try:
            response = httpx.get(url, timeout=request_timeout_s)
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}: {response.text[:200]}"
            if failed is not None and failed(response):
                raise NotReady(f"{url} reports a failure: {last}")
        except httpx.HTTPError as exc:
            last = f"{exc.__class__.__name__}: {exc}"
        if time.monotonic() >= deadline:
            raise NotReady(f"{url} did not answer 200 within {timeout_s:g}s (last: {last})")
        time.sleep(poll_s)
