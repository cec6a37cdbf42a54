"""A stand-in for `/argosay` of Argo's `argoproj/argosay:v2` test image (see `images.py`)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from pipelines.local_runner.cache import parse_duration


def main(args: list[str]) -> int:
    if not args:
        print("hello argo")
        return 0
    command, rest = args[0], args[1:]
    if command == "echo":
        text = rest[0] if rest else "hello argo"
        if len(rest) > 1:
            Path(rest[1]).parent.mkdir(parents=True, exist_ok=True)
            Path(rest[1]).write_text(text)
        else:
            print(text)
        return 0
    if command == "cat":
        for name in rest:
            sys.stdout.write(Path(name).read_text())
        return 0
    if command == "sleep":
        time.sleep(parse_duration(rest[0] if rest else "1s") or 0)
        return 0
    if command == "exit":
        return int(rest[0]) if rest else 0
    if command == "assert_contains":
        return 0 if rest[1] in Path(rest[0]).read_text() else 1
    print(f"argosay: unknown command {command!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
