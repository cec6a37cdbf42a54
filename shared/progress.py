"""A step's progress, reported the way Argo Workflows reads it, plus a one-line status for humans.

Argo's self-reported progress: the step writes `N/M` (two integers, `0 <= N <= M`) to the file
named by the environment variable `ARGO_PROGRESS_FILE` (set by Argo's executor, by default
`/var/run/argo/progress`). The executor reads the file every 3s (`ARGO_PROGRESS_FILE_TICK_DURATION`)
and the controller shows the value in the UI and in `argo get` (patched every 1m,
`ARGO_PROGRESS_PATCH_TICK_DURATION`). The local runner sets the same variable for each step.

Beside the progress file, in the same folder:

- `<progress file>.status`: one line for humans (e.g. the hpo step's trial counts and best
  accuracy so far); the same line goes to the step's log, at most every `log_interval` seconds;
- `<progress file>.links`: `name<TAB>url` lines (the MLflow run, the Ray dashboard), also logged.

Every file is replaced atomically, so a reader sees the old content or the new, never half.
Writes are rate-limited (`min_interval`); a value held back is written by a timer, so the
newest value always reaches the file. `N` never decreases and never exceeds `M`.

Cores take a `progress` argument (default `NO_PROGRESS`, which does nothing) and never read the
environment; a step's CLI builds the reporter with `Progress.from_env()`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from shared.results import atomic_write_text

PROGRESS_ENV = "ARGO_PROGRESS_FILE"
STATUS_SUFFIX = ".status"
LINKS_SUFFIX = ".links"

_PROGRESS_RE = re.compile(r"^\s*(\d+)/(\d+)\s*$")

log = logging.getLogger(__name__)


def format_progress(done: int, total: int) -> str:
    """Argo's progress text: `N/M`, integers, `0 <= N <= M`."""
    total = max(0, int(total))
    return f"{min(max(0, int(done)), total)}/{total}"


def parse_progress(text: str) -> tuple[int, int] | None:
    """(N, M) from a progress file's text, None if it is not `N/M` as Argo reads it."""
    match = _PROGRESS_RE.match(text or "")
    if not match:
        return None
    done, total = int(match.group(1)), int(match.group(2))
    return (done, total) if done <= total else None


def status_path(progress_file: Path) -> Path:
    return progress_file.with_name(progress_file.name + STATUS_SUFFIX)


def links_path(progress_file: Path) -> Path:
    return progress_file.with_name(progress_file.name + LINKS_SUFFIX)


class Progress:
    """Reports one step's `N/M` progress, its status line and its links.

    `path=None` makes a reporter that only keeps the numbers (and logs nothing): what a core
    gets when nobody watches. Thread-safe: Tune callbacks and worker threads may call it.
    """

    def __init__(
        self,
        path: str | Path | None,
        *,
        unit: str = "",
        min_interval: float = 1.0,
        log_interval: float = 10.0,
        logger: logging.Logger | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path) if path else None
        self.unit = unit
        self.min_interval = min_interval
        self.log_interval = log_interval
        self.logger = logger or log
        self._clock = clock
        self._lock = threading.RLock()
        self._timer: threading.Timer | None = None
        self.done = 0
        self.total = 0
        self.status_line = ""
        self.links: dict[str, str] = {}
        self._written: tuple[int, int] | None = None
        self._written_status: str | None = None
        self._last_write = -math.inf
        self._last_log = -math.inf
        self._logged_status: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **kwargs) -> Progress:
        """The reporter for this process: writes to `$ARGO_PROGRESS_FILE` when it is set."""
        environ = os.environ if environ is None else environ
        return cls(environ.get(PROGRESS_ENV) or None, **kwargs)

    @property
    def enabled(self) -> bool:
        return self.path is not None

    # --- numbers ------------------------------------------------------------------------------
    def set_total(self, total: int) -> None:
        """Set M (it may shrink, e.g. trials stopped early, but never below N)."""
        with self._lock:
            self.total = max(0, int(total))
            self._changed()

    def advance(self, n: int = 1) -> None:
        with self._lock:
            self.done += int(n)
            self._changed()

    def update(self, done: int | None = None, total: int | None = None) -> None:
        """Set N and/or M; N never goes down."""
        with self._lock:
            if total is not None:
                self.total = max(0, int(total))
            if done is not None:
                self.done = max(self.done, int(done))
            self._changed()

    def counting(self, fn: Callable):
        """`fn(items, ...)` that also advances N by `len(items)` once it returns (rows, files)."""

        def counted(items, *args, **kwargs):
            out = fn(items, *args, **kwargs)
            self.advance(len(items))
            return out

        return counted

    @contextlib.contextmanager
    def polling(self, count: Callable[[], int], interval: float = 0.5):
        """While the block runs, set N from `count()` every `interval` seconds (work done elsewhere,
        e.g. files a library downloads); N never goes down."""
        stop = threading.Event()

        def poll() -> None:
            while not stop.wait(interval):
                with contextlib.suppress(OSError):
                    self.update(done=count())

        thread = threading.Thread(target=poll, name="progress-poll", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join(timeout=5)
            with contextlib.suppress(OSError):
                self.update(done=count())

    def finish(self) -> None:
        """The work is complete: N = M (1/1 when no total was ever set); written at once."""
        with self._lock:
            if self.total <= 0:
                self.total = 1
            self.done = max(self.done, self.total)
            self.total = max(self.total, self.done)
            self.flush(log_status=True)

    @property
    def value(self) -> tuple[int, int]:
        """(N, M) as written: N clamped to [0, M] and never below what was written before."""
        total = max(0, self.total)
        done = min(max(0, self.done), total)
        if self._written is not None and self._written[0] > done:
            done = self._written[0]
            total = max(total, done)
        return done, total

    # --- status and links ---------------------------------------------------------------------
    def status(self, text: str, *, force: bool = False) -> None:
        """Set the one-line status (newlines are folded); logged at most every `log_interval`."""
        line = " ".join(str(text).split())
        with self._lock:
            self.status_line = line
            if force:
                self.flush(log_status=True)
            else:
                self._changed()

    def link(self, name: str, url: str) -> None:
        """Record a URL worth watching (written to the links file and logged at once)."""
        with self._lock:
            if self.links.get(name) == url:
                return
            self.links[name] = url
            self.logger.info("%s: %s", name, url)
            if self.path is not None:
                text = "".join(f"{k}\t{v}\n" for k, v in self.links.items())
                atomic_write_text(links_path(self.path), text)

    # --- writing ------------------------------------------------------------------------------
    def _changed(self) -> None:
        if self.path is None:
            return
        now = self._clock()
        if now - self._last_write >= self.min_interval:
            self.flush()
        elif self._timer is None:
            delay = max(0.0, self.min_interval - (now - self._last_write))
            self._timer = threading.Timer(delay, self._flush_from_timer)
            self._timer.daemon = True
            self._timer.start()

    def _flush_from_timer(self) -> None:
        with self._lock:
            self._timer = None
            self.flush()

    def flush(self, *, log_status: bool = False) -> None:
        """Write what changed now (progress file, status file, status log line)."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._last_write = self._clock()
            if self.path is None:
                return
            value = self.value
            if value != self._written:
                atomic_write_text(self.path, format_progress(*value))
                self._written = value
            if self.status_line != self._written_status:
                atomic_write_text(status_path(self.path), self.status_line + "\n")
                self._written_status = self.status_line
            self._log_status(force=log_status)

    def _log_status(self, force: bool = False) -> None:
        if not self.status_line or self.status_line == self._logged_status:
            return
        now = self._clock()
        if force or now - self._last_log >= self.log_interval:
            done, total = self.value
            unit = f" {self.unit}" if self.unit else ""
            self.logger.info("progress %d/%d%s: %s", done, total, unit, self.status_line)
            self._last_log = now
            self._logged_status = self.status_line

    def close(self) -> None:
        """Write anything held back (call at the end, success or not)."""
        with self._lock:
            if self._timer is not None or self._written != self.value:
                self.flush()

    # Tune and multiprocessing may pickle an object holding a reporter: it arrives as a no-op.
    def __getstate__(self) -> dict:
        return {"unit": self.unit}

    def __setstate__(self, state: dict) -> None:
        self.__init__(None, unit=state.get("unit", ""))


NO_PROGRESS = Progress(None)
"""The default for cores: keeps nothing anyone reads."""
