"""What every step CLI does around its core: settings, error reporting, result writing."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel
from rich.console import Console

from shared.errors import StepError
from shared.results import write_result

R = TypeVar("R", bound=BaseModel)

_err = Console(stderr=True, soft_wrap=True)


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def run_step(name: str, core: Callable[[], R], result_dir: Path | None) -> R:
    """Call a step's core; write its result files; turn StepError into exit code 2.

    Bad input is the user's to fix, so it prints one clear line rather than a traceback.
    """
    setup_logging()
    try:
        result = core()
    except StepError as exc:
        _err.print(f"[bold red]{name}: error:[/] {exc}", markup=True, highlight=False)
        sys.exit(2)
    if result_dir is not None:
        write_result(result, Path(result_dir) / "result.json", params_dir=Path(result_dir))
    _err.print(f"[green]{name}: done[/]", markup=True)
    return result
