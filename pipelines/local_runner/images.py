"""The few images whose own program the runner provides, since images are not run locally.

- `argoproj/argosay:v2` (Argo's test image): its entrypoint `/argosay` (echo, cat, sleep, exit,
  assert_contains; no arguments says "hello argo") is `python -m pipelines.local_runner.argosay`.
- `argoproj/argosay:v1` and `docker/whalesay`: `cowsay` is on the step's PATH (`shims/`).
"""

from __future__ import annotations

import sys
from pathlib import Path

SHIMS = Path(__file__).resolve().parent / "shims"
ENTRYPOINTS = {"argoproj/argosay:v2": ["/argosay"]}
PROGRAMS = {"/argosay": [sys.executable, "-m", "pipelines.local_runner.argosay"]}
TOOLS = {"argoproj/argosay:v1": ["cowsay"], "docker/whalesay": ["cowsay"]}


def _repo(image: str) -> str:
    return image.split("@", 1)[0]


def entrypoint(image: str) -> list[str] | None:
    """The image's default command when the template sets none, if the runner provides it."""
    return ENTRYPOINTS.get(_repo(image))


def program(argv: list[str]) -> list[str]:
    """`/argosay ...` -> this interpreter running the argosay stand-in."""
    if argv and argv[0] in PROGRAMS:
        return PROGRAMS[argv[0]] + argv[1:]
    return argv


def provides(image: str, name: str) -> bool:
    repo = _repo(image)
    return name in TOOLS.get(repo, []) or name in TOOLS.get(repo.split(":", 1)[0], [])


def uses_shims(image: str) -> bool:
    repo = _repo(image)
    return repo in TOOLS or repo.split(":", 1)[0] in TOOLS
