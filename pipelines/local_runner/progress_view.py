"""The running steps' own progress, as Argo shows it: `ARGO_PROGRESS_FILE`, read back and drawn.

Each step gets `ARGO_PROGRESS_FILE=<run dir>/tasks/<task>/progress` (what Argo's executor sets to
`/var/run/argo/progress` in a pod). The step writes `N/M` there, a one-line status beside it
(`progress.status`) and the URLs worth watching (`progress.links`), see `shared.progress`.

- On a terminal, a progress bar, `N/M` and the status line are drawn under the task table for each
  running step, with its links (`ProgressBoard.renderable`, given to the live display).
- Otherwise (CI, a pipe), `PlainTicker` prints one plain line per running step whose progress
  changed, at most every `EMOTION_PROGRESS_INTERVAL_S` seconds (default 15), and each link once,
  as soon as it appears.

Hook points in the runner (kept small, so they re-apply on a rewritten runner):
`task.execute` adds `step_env(task_dir)` to the step's environment; `app` builds the display
with `make_progress_display(state, run_dir, console)`; `display.LiveDisplay` draws `extra()`
under its table.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console, Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from shared.environment import ProductEnvironment
from shared.progress import PROGRESS_ENV, links_path, parse_progress, status_path

PROGRESS_FILE = "progress"
INTERVAL_ENV = "EMOTION_PROGRESS_INTERVAL_S"
DEFAULT_INTERVAL_S = 15.0
ACTIVE = ("running", "retrying")


def progress_file(task_dir: Path) -> Path:
    return Path(task_dir) / PROGRESS_FILE


def step_env(task_dir: Path) -> dict[str, str]:
    """What a step's environment gets so it can report progress (Argo's variable)."""
    return {PROGRESS_ENV: str(progress_file(task_dir).resolve())}


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


@dataclass
class StepProgress:
    done: int | None = None
    total: int | None = None
    status: str = ""
    links: dict[str, str] = field(default_factory=dict)

    @property
    def known(self) -> bool:
        return self.done is not None or bool(self.status) or bool(self.links)

    def fraction(self) -> str:
        if self.done is None or self.total is None:
            return ""
        percent = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        return f"{self.done}/{self.total}{percent}"


def read_step_progress(task_dir: Path) -> StepProgress:
    """What the step reported so far (an empty StepProgress when nothing yet)."""
    path = progress_file(task_dir)
    found = StepProgress()
    parsed = parse_progress(_read(path) or "")
    if parsed is not None:
        found.done, found.total = parsed
    found.status = " ".join((_read(status_path(path)) or "").split())
    for line in (_read(links_path(path)) or "").splitlines():
        name, sep, url = line.partition("\t")
        if sep and url.strip():
            found.links[name.strip()] = url.strip()
    return found


class ProgressBoard:
    """Reads the progress files of the run's active tasks."""

    def __init__(self, run_dir: Path, state) -> None:
        self.run_dir = Path(run_dir)
        self.state = state

    def task_dir(self, name: str) -> Path:
        return self.run_dir / "tasks" / name

    def active(self) -> list[tuple[str, StepProgress]]:
        found = []
        for name, task in list(self.state.tasks.items()):
            if task.phase in ACTIVE:
                step = read_step_progress(self.task_dir(name))
                if step.known:
                    found.append((name, step))
        return found

    def renderable(self) -> RenderableType | None:
        """A bar, `N/M` and the status line per reporting step, with its links; None if none."""
        rows = self.active()
        if not rows:
            return None
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="bold cyan", no_wrap=True)
        grid.add_column(no_wrap=True)
        grid.add_column(no_wrap=True)
        grid.add_column(overflow="fold")
        links = []
        for name, step in rows:
            bar = ProgressBar(total=step.total or None, completed=step.done or 0, width=30)
            grid.add_row(name, bar, step.fraction(), Text(step.status))
            for label, url in step.links.items():
                link = Text(f"{name} ", style="bold cyan") + Text(f"{label}: ", style="dim")
                links.append(link + Text(url, style="underline"))
        return Group(Text(""), grid, *links)

    def plain_lines(self) -> list[tuple[str, str, StepProgress]]:
        """(task, one plain line, progress) for each reporting step."""
        lines = []
        for name, step in self.active():
            parts = [x for x in (step.fraction(), step.status) if x]
            lines.append((name, f"  {name}: " + "  ".join(parts) if parts else f"  {name}: ...", step))
        return lines


def plain_interval() -> float:
    try:
        return max(0.1, float(ProductEnvironment().progress_interval_s or DEFAULT_INTERVAL_S))
    except ValueError:
        return DEFAULT_INTERVAL_S


class PlainTicker:
    """Prints running steps' progress as plain lines (no redrawing): for CI logs and pipes."""

    def __init__(self, board: ProgressBoard, console: Console, interval: float | None = None) -> None:
        self.board = board
        self.console = console
        self.interval = plain_interval() if interval is None else interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="progress-ticker", daemon=True)
        self._printed: dict[str, str] = {}
        self._links: set[tuple[str, str, str]] = set()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def tick(self, print_progress: bool = True) -> None:
        for name, line, step in self.board.plain_lines():
            for label, url in step.links.items():
                if (name, label, url) not in self._links:
                    self._links.add((name, label, url))
                    self.console.print(f"  {name}: {label}: {url}", highlight=False, soft_wrap=True)
            if print_progress and self._printed.get(name) != line:
                self._printed[name] = line
                self.console.print(line, highlight=False, soft_wrap=True)

    def _loop(self) -> None:
        elapsed = 0.0
        poll = min(1.0, self.interval)
        while not self._stop.wait(poll):
            elapsed += poll
            due = elapsed >= self.interval
            if due:
                elapsed = 0.0
            try:
                self.tick(print_progress=due)
            except Exception:  # noqa: BLE001 - a display problem must never stop the run
                pass


class _WithTicker:
    """A plain display plus the ticker, started and stopped together."""

    def __init__(self, display, ticker: PlainTicker) -> None:
        self.display = display
        self.ticker = ticker

    def start(self) -> None:
        self.display.start()
        self.ticker.start()

    def changed(self, name: str) -> None:
        self.display.changed(name)

    def stop(self) -> None:
        self.ticker.stop()
        self.display.stop()


def make_progress_display(state, run_dir: Path, console: Console | None = None, make: Callable | None = None):
    """The run's display with the steps' progress: drawn live on a terminal, plain lines otherwise."""
    from pipelines.local_runner.display import make_display

    console = console or Console(highlight=False)
    board = ProgressBoard(run_dir, state)
    make = make or make_display
    if console.is_terminal:
        return make(state, console, extra=board.renderable)
    return _WithTicker(make(state, console), PlainTicker(board, console))
