"""The runner hands each step ARGO_PROGRESS_FILE and shows what the step writes there."""

from __future__ import annotations

import io
import re
from pathlib import Path

from rich.console import Console

from pipelines.local_runner.app import RunRequest, execute_run
from pipelines.local_runner.progress_view import INTERVAL_ENV, read_step_progress
from tests.runner.conftest import write_workflow

REPO = Path(__file__).resolve().parents[2]

# A step that reports like the real ones do (through shared.progress), slowly enough to be seen.
STEP = """
import os, time
from shared.progress import Progress
p = Progress.from_env(min_interval=0.0)
assert p.enabled, "ARGO_PROGRESS_FILE is not set"
p.link("dashboard", "http://127.0.0.1:9999/#/x")
p.set_total(4)
for i in range(4):
    time.sleep(0.6)
    p.advance(1)
    p.status(f"working on item {i + 1} of 4")
time.sleep(0.6)
p.finish()
open("/tmp/out", "w").write(os.environ["ARGO_PROGRESS_FILE"])
"""


def _workflow(tmp_path):
    doc = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"generateName": "progress-"},
        "spec": {
            "entrypoint": "main",
            "templates": [
                {"name": "main", "dag": {"tasks": [{"name": "work", "template": "work"}]}},
                {
                    "name": "work",
                    "outputs": {"parameters": [{"name": "file", "valueFrom": {"path": "/tmp/out"}}]},
                    "container": {"image": "python:3.11", "command": ["python", "-c"], "args": [STEP]},
                },
            ],
        },
    }
    return write_workflow(tmp_path, doc)


def _run(tmp_path, console) -> tuple[int, str]:
    request = RunRequest(workflow=_workflow(tmp_path), local_dir=tmp_path / ".local", workdir=tmp_path)
    code = execute_run(request, console)
    return code, console.file.getvalue()


def test_plain_lines_in_a_pipe(tmp_path, monkeypatch):
    monkeypatch.setenv(INTERVAL_ENV, "0.5")
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    code, text = _run(tmp_path, Console(file=io.StringIO(), force_terminal=False, width=200))
    assert code == 0, text
    assert "\x1b[" not in text  # nothing redrawn in place
    assert "work: dashboard: http://127.0.0.1:9999/#/x" in text
    lines = re.findall(r"^  work: (\d+)/4 \(\d+%\)  working on item (\d) of 4$", text, re.M)
    assert lines, text
    assert [int(n) for n, _ in lines] == sorted(int(n) for n, _ in lines)  # rising
    run_dirs = list((tmp_path / ".local" / "runs").iterdir())
    final = read_step_progress(run_dirs[0] / "tasks" / "work")
    assert (final.done, final.total) == (4, 4)
    assert final.status == "working on item 4 of 4"


def test_bars_on_a_terminal(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    code, text = _run(tmp_path, Console(file=io.StringIO(), force_terminal=True, width=160))
    assert code == 0, text
    assert "\x1b[" in text
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    assert re.search(r"work .*━.* [1-4]/4 \(\d+%\) working on item [1-4] of 4", text), text
    assert "work dashboard: http://127.0.0.1:9999/#/x" in text
