"""Process plumbing for the local server: start Gunicorn detached, find its workers, stop it."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import psutil

from shared.processes import log_tail as shared_log_tail

# Code that runs inside the server processes lives in `serving/`.
GUNICORN_CONF = Path(importlib.util.find_spec("serving").origin).with_name("gunicorn_conf.py")
APP_SPEC = "serving.gated_app:create_app()"
CONFIG_ENV_VAR = "EMOTION_SERVE_CONFIG"


def spawn_gunicorn(
    config_path: Path, log_path: Path, cwd: Path, pass_fds: Sequence[int] = ()
) -> subprocess.Popen:
    """Start a Gunicorn master in its own session, so it outlives the deploy step and its terminal."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, CONFIG_ENV_VAR: str(config_path)}
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF), APP_SPEC],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=tuple(pass_fds),
        )


def is_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def is_our_master(pid: int, config_path: Path) -> bool:
    """True when `pid` is a live Gunicorn master started by this step for `config_path`.

    Guards against pid reuse: a recycled pid belongs to some other program, never signal it.
    """
    if not is_alive(pid):
        return False
    try:
        proc = psutil.Process(pid)
        return "gunicorn" in " ".join(proc.cmdline()) and proc.environ().get(CONFIG_ENV_VAR) == str(
            config_path
        )
    except psutil.Error:
        return False


def worker_pids(master_pid: int) -> list[int]:
    """The live worker processes of a Gunicorn master."""
    try:
        children = psutil.Process(master_pid).children()
    except psutil.Error:
        return []
    return sorted(c.pid for c in children if is_alive(c.pid))


def wait_gone(pids: Sequence[int], timeout_s: float) -> bool:
    """Wait until none of `pids` is alive; True if they all went in time."""
    deadline = time.monotonic() + timeout_s
    while any(is_alive(p) for p in pids):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def terminate(pid: int, timeout_s: float) -> None:
    """SIGTERM (Gunicorn: graceful stop), then SIGKILL the process group if it is still there."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if wait_gone([pid], timeout_s):
        return
    try:
        os.killpg(pid, signal.SIGKILL)  # the master leads its own session/group
    except ProcessLookupError:
        pass
    wait_gone([pid], 5.0)


def listening_socket(host: str = "127.0.0.1") -> socket.socket:
    """A listening socket on a free port, to hand to a candidate server (`bind = fd://N`)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.listen(128)
    return sock


def log_tail(path: Path, lines: int = 15) -> str:
    """The last `lines` lines of a log file."""
    return "\n".join(shared_log_tail(path, chars=lines * 400).splitlines()[-lines:])
