"""The real workflow's local surroundings for tests: a data registry in a local dir, and stopping
the server the deploy step left running there."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_registry(local: Path, dataset_dir: Path) -> None:
    """`<local>/data-registry` built from `dataset_dir`, as `make registry` does."""
    subprocess.run(
        [sys.executable, "-m", "shared.data_registry", "build", "--source", str(dataset_dir)]
        + ["--registry", str(local / "data-registry")],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )


def stop_server(local: Path) -> None:
    """`python -m steps.deploy stop` for the local dir (nothing running is fine)."""
    subprocess.run(
        [sys.executable, "-m", "steps.deploy", "stop"],
        cwd=ROOT,
        capture_output=True,
        env={**os.environ, "EMOTION_LOCAL_DIR": str(local)},
        timeout=120,
    )
