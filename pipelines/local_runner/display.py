"""Show the run's tasks while it runs: a live rich table on a terminal, plain lines otherwise (CI)."""

from __future__ import annotations

import threading
import time

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from pipelines.local_runner.state import RunState, TaskState

STYLES = {
    "pending": ("dim", "·"),
    "running": ("bold cyan", "▶"),
    "retrying": ("yellow", "↻"),
    "succeeded": ("green", "✔"),
    "cached": ("blue", "⚡"),
    "skipped": ("dim", "↷"),
    "omitted": ("dim", "–"),
    "failed": ("bold red", "✘"),
    "errored": ("bold red", "✘"),
    "interrupted": ("yellow", "■"),
}


def _duration(task: TaskState) -> str:
    seconds = task.duration
    if seconds is None:
        return ""
    return f"{seconds:.1f}s" if seconds < 60 else f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def _detail(task: TaskState) -> str:
    parts = []
    if task.attempts > 1:
        parts.append(f"attempt {task.attempts}")
    if task.message and task.phase not in ("succeeded",):
        parts.append(task.message)
    return "; ".join(parts)


class Display:
    """Plain-line display: one line per task phase change (what CI logs show)."""

    def __init__(self, state: RunState, console: Console | None = None):
        self.state = state
        self.console = console or Console(highlight=False)
        self._seen: dict[str, tuple[str, int]] = {}
        self._lock = threading.Lock()

    def start(self) -> None:
        self.console.print(f"run {self.state.run_id}: {len(self.state.tasks)} tasks")
        for name, task in self.state.tasks.items():
            if task.phase != "pending":  # kept from the run being resumed
                self.changed(name)

    def changed(self, name: str) -> None:
        task = self.state.tasks[name]
        key = (task.phase, max(task.attempts, 1))
        with self._lock:
            if self._seen.get(name) == key:
                return
            self._seen[name] = key
            detail = _detail(task)
            duration = _duration(task) if task.finished_at else ""
            style, icon = STYLES.get(task.phase, ("", "?"))
            extra = "  ".join(x for x in (duration, detail) if x)
            self.console.print(
                f"[{style}]{icon} {name}: {task.phase}[/]" + (f"  {extra}" if extra else ""),
                markup=True,
                soft_wrap=True,
            )

    def stop(self) -> None:
        pass


class LiveDisplay(Display):
    """A table of every task, refreshed in place while the run goes on."""

    def __init__(self, state: RunState, console: Console | None = None, extra=None):
        super().__init__(state, console)
        self._extra = extra  # callable -> renderable drawn under the table (the steps' progress), or None
        self._live = Live(
            self._table(),
            console=self.console,
            refresh_per_second=4,
            transient=False,
            get_renderable=self._renderable,
        )

    def _table(self) -> Table:
        elapsed = time.time() - self.state.created_at
        table = Table(title=f"run {self.state.run_id}  ({elapsed:.0f}s)", title_justify="left", expand=False)
        for column in ("task", "status", "duration", "detail"):
            table.add_column(column)
        for name, task in list(self.state.tasks.items()):  # nodes appear while it runs
            style, icon = STYLES.get(task.phase, ("", "?"))
            table.add_row(name, f"[{style}]{icon} {task.phase}[/]", _duration(task), _detail(task)[:80])
        return table

    def _renderable(self):
        extra = self._extra() if self._extra is not None else None
        return self._table() if extra is None else Group(self._table(), extra)

    def start(self) -> None:
        self._live.start()

    def changed(self, name: str) -> None:
        self._live.refresh()

    def stop(self) -> None:
        self._live.stop()


def make_display(state: RunState, console: Console | None = None, extra=None) -> Display:
    console = console or Console(highlight=False)
    return LiveDisplay(state, console, extra) if console.is_terminal else Display(state, console)
