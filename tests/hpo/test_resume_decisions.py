"""A resumed search decides as the uninterrupted one (slow): the real hpo step, one trial at a time,
interrupted by SIGINT or killed by SIGKILL at an early, a middle and a late point, then run again
with the same workflow uid (what `make resume` and a pod retry do)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from steps.hpo.tracking import FINISHED, KILLED
from tests.hpo.driver import ROOT, assert_same_decisions, signal_when, step_env, trial_epochs, trial_record

pytestmark = pytest.mark.slow

SAMPLES, MAX_EPOCHS = 6, 3


def _argv(tokenized_dir, model, space, tmp: Path, alg: str) -> list[str]:
    return [
        sys.executable, "-m", "steps.hpo",
        "--tokenized-dir", str(tokenized_dir), "--model", str(model), "--search-space", str(space),
        "--num-samples", str(SAMPLES), "--max-epochs", str(MAX_EPOCHS), "--limit", "120",
        "--asha-grace-period", "1", "--asha-reduction-factor", "2", "--search-alg", alg,
        "--cpus-per-trial", "1", "--ray-num-cpus", "1", "--torch-threads", "1", "--seed", "5",
        "--storage-dir", str(tmp / "hpo"), "--result-dir", str(tmp / "result"), "--workflow-uid", "wf-r",
    ]  # fmt: skip


def _env(tmp: Path) -> dict[str, str]:
    return step_env(f"sqlite:///{tmp / 'mlflow.db'}", "resume")


def _record(tmp: Path) -> dict[tuple, dict]:
    return trial_record(f"sqlite:///{tmp / 'mlflow.db'}", "resume")


def _epochs(record: dict[tuple, dict]) -> int:
    return trial_epochs(record)


def _run(argv, env, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def space(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("space") / "space.yaml"
    path.write_text(
        "learning_rate: {distribution: loguniform, low: 1.0e-5, high: 3.0e-3}\n"
        "batch_size: {distribution: choice, values: [16, 32]}\n"
    )
    return path


_BASELINES: dict[str, dict] = {}


def _baseline(alg, tokenized_dir, tiny_base_model, space, tmp_path_factory) -> dict[tuple, dict]:
    if alg not in _BASELINES:
        tmp = tmp_path_factory.mktemp(f"baseline-{alg}")
        done = _run(_argv(tokenized_dir, tiny_base_model, space, tmp, alg), _env(tmp))
        assert done.returncode == 0, done.stderr[-3000:]
        _BASELINES[alg] = _record(tmp)
    return _BASELINES[alg]


# Where the first run is stopped, in trial-epochs recorded out of the uninterrupted search's total:
# early (the first trials, ASHA's first rung still filling), middle, late (the last trials left).
POINTS = {"early": lambda total: 2, "middle": lambda total: total // 2, "late": lambda total: total - 2}


# Three runs (a run costs 1-2 min here): each algorithm, each signal and each point once at least;
# Optuna, whose searcher has state to restore, under both signals. Random under SIGINT is the
# runner's Ctrl-C then resume (tests/runner/test_real_resume.py).
@pytest.mark.parametrize(
    ("alg", "sig", "point"),
    [
        ("random", signal.SIGKILL, "late"),
        ("optuna", signal.SIGKILL, "middle"),
        ("optuna", signal.SIGINT, "early"),
    ],
    ids=lambda v: v.name.lower() if isinstance(v, signal.Signals) else v,
)
def test_resumed_search_runs_and_stops_the_same_trials_with_the_same_metrics(
    alg, sig, point, tokenized_dir, tiny_base_model, space, tmp_path, tmp_path_factory
):
    expected = _baseline(alg, tokenized_dir, tiny_base_model, space, tmp_path_factory)
    total = _epochs(expected)
    assert total < SAMPLES * MAX_EPOCHS, "ASHA stopped some trials in the uninterrupted search"
    epochs = POINTS[point](total)
    assert 0 < epochs < total

    argv, env = _argv(tokenized_dir, tiny_base_model, space, tmp_path, alg), _env(tmp_path)

    def stop_now() -> bool:
        return _epochs(_record(tmp_path)) >= epochs

    code = signal_when(argv, env, stop_now, sig, tmp_path / "first.log", poll=0.2).returncode
    assert code != 0, (tmp_path / "first.log").read_text()[-3000:]
    assert not (tmp_path / "result" / "result.json").exists(), "an interrupted search wrote a result"
    interrupted = _record(tmp_path)
    assert FINISHED not in {r["status"] for r in interrupted.values()} or len(interrupted) < SAMPLES
    if sig == signal.SIGINT:  # closed as interrupted; a killed driver cannot close anything
        from mlflow.tracking import MlflowClient

        client = MlflowClient(env["MLFLOW_TRACKING_URI"])
        experiment = client.get_experiment_by_name("resume")
        parent = client.search_runs([experiment.experiment_id], "tags.hpo_role = 'parent'")[0]
        assert parent.info.status == KILLED

    progress_file = tmp_path / "progress"
    resumed = _run(argv, {**env, "ARGO_PROGRESS_FILE": str(progress_file)})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    got = _record(tmp_path)
    assert len({r["trial"] for r in got.values()}) == SAMPLES, "one child run per trial"
    assert_same_decisions(got, expected)
    # the resumed step's progress counted the epochs done before the interruption too
    assert progress_file.read_text().strip() == f"{total}/{total}"
