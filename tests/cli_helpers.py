"""Call a step's generated CLI in-process, as `python -m steps.<step>` would, and see its exit code."""

from __future__ import annotations

from collections.abc import Callable, Sequence


def run_main(main: Callable[[Sequence[str]], object], argv: Sequence[str], capsys) -> tuple[int, str]:
    """`(exit code, stdout + stderr)` of `main(argv)`; 0 when it returns normally."""
    try:
        main(list(argv))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    captured = capsys.readouterr()
    return code, " ".join((captured.out + captured.err).split())
