"""Images built from the commit by `docker/build-images.sh`, for the slow image tests.

The build runs once per session per image (the engine's layer cache makes a rebuild of an unchanged
commit take seconds). No container engine fails the test, naming what to install: CI must run
these. The build passes through TORCH_WHEEL_DIR and BUILD_CA_BUNDLE (.ci/run sets them).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from shared.containers import EngineMissing, engine_command

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "docker" / "build-images.sh"
BUILD_TIMEOUT_S = 3000


def build_image(which: str, log_dir: Path) -> str:
    try:
        engine_command()
    except EngineMissing as exc:
        pytest.fail(f"the image tests need a container engine: {exc}")
    log = log_dir / f"build-{which}.log"
    with open(log, "wb") as out:
        done = subprocess.run(
            ["bash", str(BUILD)],
            cwd=ROOT,
            env={**os.environ, "IMAGES": which},
            stdout=subprocess.PIPE,
            stderr=out,
            timeout=BUILD_TIMEOUT_S,
        )
    if done.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        pytest.fail(f"building the {which} image failed (exit {done.returncode}):\n{tail}")
    return done.stdout.decode().split()[-1]


@pytest.fixture(scope="session")
def serving_image(tmp_path_factory) -> str:
    return build_image("serving", tmp_path_factory.mktemp("build"))


@pytest.fixture(scope="session")
def train_image(tmp_path_factory) -> str:
    return build_image("train", tmp_path_factory.mktemp("build"))
