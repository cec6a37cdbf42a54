"""The hpo step as a subprocess of a test: its environment, and stopping it mid-search by a signal
(Ctrl-C, a pod's SIGTERM or SIGKILL), with Ray's processes of the dead driver gone as at a pod's end."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def step_env(tracking_uri: str, experiment: str) -> dict[str, str]:
    """The test's environment with MLflow pointed at `tracking_uri`/`experiment` and the repo importable."""
    return {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_EXPERIMENT_NAME": experiment,
        "PYTHONPATH": str(ROOT),
    }


def signal_when(
    argv: list[str],
    env: dict[str, str],
    ready: Callable[[], bool],
    sig: int,
    log: Path,
    *,
    timeout: float = 300,
    poll: float = 0.5,
    settle: float = 0.0,
) -> subprocess.Popen:
    """Start the step (stdout and stderr to `log`), send `sig` once `ready()` holds (after `settle`
    more seconds, e.g. for Tune to save its state), and return it once it has ended.

    Fails if the step ends before it could be signalled. Whatever happens, the step's process
    group (its own session: the local Ray's processes) is killed afterwards.
    """
    with open(log, "wb") as out:
        driver = subprocess.Popen(argv, cwd=ROOT, env=env, start_new_session=True, stdout=out, stderr=out)
    deadline = time.monotonic() + timeout
    try:
        while driver.poll() is None and time.monotonic() < deadline:
            if ready():
                time.sleep(settle)
                break
            time.sleep(poll)
        assert driver.poll() is None, "the search ended before it could be interrupted"
        os.kill(driver.pid, sig)
        driver.wait(timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        try:
            os.killpg(driver.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return driver
