"""Run one attempt of a step as a local process in its own process group.

Output goes to the task's log (stdout and stderr interleaved, as `kubectl logs` shows them);
stdout is also kept as Argo's `outputs.result`. On interruption, or once the step exits, whatever
is left in its process group is terminated, as a pod's end would; a daemon the step detached into
its own session (the deploy step's server) is outside the group and keeps running.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from shared.processes import terminate_group

MAX_RESULT_BYTES = 256 * 1024  # Argo caps outputs.result too


@dataclass
class Attempt:
    exit_code: int | None  # None: the process could not start
    status: str  # "Succeeded" | "Failed" | "Error" (Argo's names, for retry expressions)
    message: str
    stdout: str
    duration: float


class ProcessGroups:
    """The process groups of running steps, so an interrupt can stop them all."""

    def __init__(self) -> None:
        self._groups: dict[int, subprocess.Popen | None] = {}
        self._lock = threading.Lock()
        self.stopping = threading.Event()

    def add(self, pgid: int, proc: subprocess.Popen | None = None) -> None:
        with self._lock:
            self._groups[pgid] = proc

    def discard(self, pgid: int) -> None:
        with self._lock:
            self._groups.pop(pgid, None)

    def terminate_all(self, grace: float = 5.0) -> None:
        self.stopping.set()
        with self._lock:
            groups = list(self._groups.items())
        threads = [
            threading.Thread(target=terminate_group, args=(g, grace, p), daemon=True) for g, p in groups
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


def _pump(stream, log, lock: threading.Lock, keep: list[bytes] | None) -> None:
    size = 0
    try:
        for line in iter(stream.readline, b""):
            with lock:
                log.write(line)
                log.flush()
            if keep is not None and size < MAX_RESULT_BYTES:
                keep.append(line)
                size += len(line)
    except (OSError, ValueError):  # the log was closed under a detached daemon still writing
        pass
    finally:
        stream.close()


def run_attempt(
    argv: list[str],
    env: dict[str, str],
    cwd: Path,
    log_path: Path,
    groups: ProcessGroups,
    timeout: float | None = None,
    timeout_field: str = "activeDeadlineSeconds",
) -> Attempt:
    start = time.monotonic()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        try:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            message = f"cannot start {argv[0]!r}: {exc.strerror or exc}"
            log.write(f"[local-runner] {message}\n".encode())
            return Attempt(None, "Error", message, "", time.monotonic() - start)
        groups.add(proc.pid, proc)
        if groups.stopping.is_set():  # an interrupt raced with this start
            terminate_group(proc.pid, grace=1.0, proc=proc)
        lock = threading.Lock()
        stdout: list[bytes] = []
        pumps = [
            threading.Thread(target=_pump, args=(proc.stdout, log, lock, stdout), daemon=True),
            threading.Thread(target=_pump, args=(proc.stderr, log, lock, None), daemon=True),
        ]
        for pump in pumps:
            pump.start()
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            terminate_group(proc.pid, proc=proc)
            proc.wait()
        terminate_group(proc.pid, grace=2.0, proc=proc)  # leftovers in the step's group, as at a pod's end
        groups.discard(proc.pid)
        for pump in pumps:
            pump.join(timeout=2.0)  # a detached daemon may still hold the pipe; do not wait for it
        with lock:
            text = b"".join(stdout).decode(errors="replace")
        duration = time.monotonic() - start
        code = proc.returncode
        if timed_out:
            message = f"exceeded {timeout_field} ({timeout:g}s)"
            with lock:
                log.write(f"[local-runner] {message}\n".encode())
            return Attempt(code, "Failed", message, text, duration)
        if code == 0:
            return Attempt(0, "Succeeded", "", text, duration)
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
            return Attempt(code, "Error", f"killed by {name}", text, duration)
        return Attempt(code, "Failed", f"exit code {code}", text, duration)
