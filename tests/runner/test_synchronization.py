"""`synchronization` locally: two concurrent runs of one local dir serialize on a mutex, whether the
template or the whole workflow declares it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.runner.conftest import write_workflow

ROOT = Path(__file__).resolve().parents[2]


def _workflow(journal: Path, level: str) -> dict:
    step = (
        "import os, sys, time; j = open(sys.argv[1], 'a');"
        " j.write(f'start {os.getpid()}\\n'); j.flush(); time.sleep(1.5);"
        " j.write(f'end {os.getpid()}\\n'); j.close()"
    )
    lock = {"mutexes": [{"name": "register-{{workflow.parameters.model-name}}"}]}
    template = {
        "name": "gate",
        "container": {"image": "python:3.11", "command": ["python", "-c", step, str(journal)]},
    }
    spec = {
        "entrypoint": "gate",
        "arguments": {"parameters": [{"name": "model-name", "value": "emotion-classifier"}]},
        "templates": [template],
    }
    (template if level == "template" else spec)["synchronization"] = lock
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"generateName": "sync-"},
        "spec": spec,
    }


@pytest.mark.parametrize("level", ["template", "workflow"])
def test_two_concurrent_runs_serialize_their_mutex_steps(tmp_path, level):
    journal = tmp_path / "journal"
    path = write_workflow(tmp_path, _workflow(journal, level))
    local = tmp_path / ".local"
    argv = [sys.executable, "-m", "pipelines.run_local", str(path), "--local-dir", str(local)]
    runs = [
        subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    events = journal.read_text().split("\n")[:-1]
    assert len(events) == 4, events
    # never two starts in a row: the second step began only after the first one ended
    kinds = [e.split()[0] for e in events]
    assert kinds == ["start", "end", "start", "end"], events
    assert events[0].split()[1] == events[1].split()[1] and events[2].split()[1] == events[3].split()[1]
    assert (local / "locks" / "mutex-register-emotion-classifier.0.lock").exists()


def test_the_compiled_register_step_holds_a_mutex_named_after_the_model():
    import yaml

    doc = yaml.safe_load((ROOT / "pipelines" / "emotion-hpo.yaml").read_text())
    register = next(t for t in doc["spec"]["templates"] if t["name"] == "register")
    assert register["synchronization"] == {
        "mutexes": [{"name": "emotion-hpo-register-{{workflow.parameters.model-name}}"}]
    }
