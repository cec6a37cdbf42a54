"""Helpers for the local runner tests: run a fixture workflow through the real CLI, read its state."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from pipelines.run_local import app

WORKFLOWS = Path(__file__).parent / "workflows"


@dataclass
class RunOutcome:
    exit_code: int
    output: str
    local_dir: Path
    latest: Path | None  # the newest run folder right after this invocation

    @property
    def run_dir(self) -> Path:
        assert self.latest is not None, f"no run was created:\n{self.output}"
        return self.latest

    @property
    def state(self) -> dict:
        return json.loads((self.run_dir / "state.json").read_text())

    def phase(self, task: str) -> str:
        return self.state["tasks"][task]["phase"]

    def task(self, task: str) -> dict:
        return self.state["tasks"][task]


def _latest_run(local_dir: Path) -> Path | None:
    states = [
        (json.loads(p.read_text())["created_at"], p.parent) for p in (local_dir / "runs").glob("*/state.json")
    ]
    return max(states)[1] if states else None


@pytest.fixture
def run_workflow(tmp_path: Path):
    """run_workflow("diamond.yaml" | Path, "--param", "k=v", ...) -> RunOutcome, in a fresh .local."""
    local_dir = tmp_path / ".local"

    def run(workflow: str | Path, *args: str) -> RunOutcome:
        path = workflow if isinstance(workflow, Path) else WORKFLOWS / workflow
        result = CliRunner().invoke(app, [str(path), "--local-dir", str(local_dir), *args])
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return RunOutcome(result.exit_code, result.output, local_dir, _latest_run(local_dir))

    return run


@pytest.fixture
def work_dir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


def load_fixture(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def write_workflow(tmp_path: Path, doc: dict, name: str = "wf.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path
