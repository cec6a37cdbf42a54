"""A small real search through the local runner reports Argo progress that rises to M/M (slow)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipelines.local_runner.progress_view import INTERVAL_ENV, read_step_progress
from pipelines.local_runner.services import free_port
from pipelines.run_local import app
from shared.progress import parse_progress
from tests.local_pipeline import build_registry, stop_server

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "pipelines" / "emotion-hpo.yaml"


def _sample(local: Path, stop: threading.Event, seen: list[tuple[int, int]]) -> None:
    """Every Argo-format value the hpo step's progress file held while the run went on."""
    while not stop.wait(0.1):
        for path in (local / "runs").glob("*/tasks/hpo/progress"):
            try:
                text = path.read_text()
            except OSError:
                continue
            value = parse_progress(text)
            assert value is not None, f"not Argo's N/M format: {text!r}"
            if not seen or seen[-1] != value:
                seen.append(value)


@pytest.mark.slow
def test_hpo_progress_rises_to_m_of_m(tmp_path, tiny_base_model, dataset_dir, monkeypatch):
    monkeypatch.setenv(INTERVAL_ENV, "1")
    local = tmp_path / ".local"
    build_registry(local, dataset_dir)
    args = [str(WORKFLOW), "--local-dir", str(local), "--profile", "demo", "--no-retry", "--no-smoke"]
    params = {
        "model": str(tiny_base_model),
        "num-samples": "3",
        "max-epochs": "2",
        "asha-grace-period": "1",
        "limit": "120",
        "eval-limit": "60",
        "serving-port": str(free_port()),
    }
    for key, value in params.items():
        args += ["--param", f"{key}={value}"]
    seen: list[tuple[int, int]] = []
    stop = threading.Event()
    sampler = threading.Thread(target=_sample, args=(local, stop, seen), daemon=True)
    sampler.start()
    try:
        result = CliRunner().invoke(app, args)  # not a terminal: plain progress lines
        stop.set()
        sampler.join(timeout=5)
        assert result.exit_code == 0, result.output
        run_dir = next((local / "runs").iterdir())
        final = read_step_progress(run_dir / "tasks" / "hpo")
        assert seen, "the hpo step never wrote its progress file"
        done = [n for n, _ in seen]
        assert done == sorted(done), seen  # N never goes down
        assert all(n <= m for n, m in seen), seen
        assert (final.done, final.total) == seen[-1]
        assert final.done == final.total and 0 < final.total <= 3 * 2, seen
        assert "best val_accuracy" in final.status, final.status
        assert "(trial " in final.status and "0 running" in final.status, final.status
        assert "hpo: mlflow parent run:" in result.output, result.output
        assert "make mlflow-ui" in final.links["mlflow parent run"]
        assert "  hpo: " in result.output and "trials:" in result.output  # the plain progress lines
        dvc = read_step_progress(run_dir / "tasks" / "dvc-fetch")
        tok = read_step_progress(run_dir / "tasks" / "tokenize-to-parquet")
        reg = read_step_progress(run_dir / "tasks" / "register")
        for step in (dvc, tok, reg):
            assert step.done == step.total and step.total > 0, step
    finally:
        stop.set()
        stop_server(local)
