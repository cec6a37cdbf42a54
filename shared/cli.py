"""What every step CLI does around its core: logging, the failure policy, result writing.

The failure policy (see `shared.errors` and docs/architecture.md): bad input exits 2 with one line,
a transient fault exits 75 with one line (the workflow retries it), anything else exits 1 with its
traceback.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel
from rich.console import Console

from shared.errors import EXIT_BAD_INPUT, EXIT_BUG, EXIT_TRANSIENT
from shared.failures import exit_code_for
from shared.results import write_result

R = TypeVar("R", bound=BaseModel)

_err = Console(stderr=True, soft_wrap=True)
EXIT_INTERRUPTED = 130


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def fail(name: str, exc: BaseException) -> int:
    """Report `exc` as the failure policy says; return the exit code."""
    code = exit_code_for(exc)
    if code == EXIT_BAD_INPUT:
        _err.print(f"[bold red]{name}: error:[/] {_one_line(exc)}", markup=True, highlight=False)
    elif code == EXIT_TRANSIENT:
        _err.print(
            f"[bold yellow]{name}: transient failure (exit {EXIT_TRANSIENT}, retried):[/] "
            f"{type(exc).__name__}: {_one_line(exc)}",
            markup=True,
            highlight=False,
        )
    else:
        traceback.print_exception(exc, file=sys.stderr)
        _err.print(f"[bold red]{name}: failed (bug, exit {EXIT_BUG})[/]", markup=True, highlight=False)
    return code


def run_step(name: str, core: Callable[[], R], result_dir: Path | None) -> R:
    """Call a step's core; write its result files; exit 2, 75 or 1 as the failure policy says."""
    setup_logging()
    try:
        result = core()
    except KeyboardInterrupt:
        _err.print(f"[yellow]{name}: interrupted[/]", markup=True)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:  # noqa: BLE001 - the failure policy is the point
        sys.exit(fail(name, exc))
    if result_dir is not None:
        write_result(result, Path(result_dir) / "result.json", params_dir=Path(result_dir))
    _err.print(f"[green]{name}: done[/]", markup=True)
    return result
