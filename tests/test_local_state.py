"""Nothing lands in the current directory: MLflow stores, artifacts and the serving cache follow settings.

MLflow's own defaults are relative to the current directory (`./mlflow.db`, and `./mlruns` as the
artifact root of a SQLite store), which under pytest or `make demo` is the repository root.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.mlflow_utils import connect, local_artifact_root, tracking_uri
from shared.settings import Settings
from tests.conftest import LOCAL_STATE_ENV, ROOT, reset_mlflow_process_state


@pytest.fixture
def empty_cwd(tmp_path, monkeypatch) -> Path:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


@pytest.fixture
def no_tracking_uri(monkeypatch):
    """As in a fresh process with MLFLOW_TRACKING_URI unset."""
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(mlflow, "is_tracking_uri_set", lambda: False)


def test_the_session_keeps_local_state_out_of_the_repository(local_state_dir):
    import os

    for name in LOCAL_STATE_ENV:
        value = os.environ[name].removeprefix("sqlite:///")
        assert Path(value).resolve().is_relative_to(local_state_dir), name
    assert not local_state_dir.resolve().is_relative_to(ROOT)


def test_sqlite_artifacts_live_beside_the_database(tmp_path):
    assert local_artifact_root(f"sqlite:///{tmp_path}/store/m.db") == tmp_path / "store" / "mlartifacts"
    assert local_artifact_root("sqlite:///relative/m.db") == Path("relative").resolve() / "mlartifacts"
    assert local_artifact_root("http://mlflow:5000") is None
    assert local_artifact_root("sqlite:///:memory:") is None


def test_a_logged_run_writes_nothing_in_the_current_directory(empty_cwd, tiny_model_dir, tmp_path):
    import mlflow

    from shared.model_package import log_model

    store = tmp_path / "store"
    uri = f"sqlite:///{store / 'mlflow.db'}"
    connect(Settings(mlflow_tracking_uri=uri, mlflow_experiment_name="leak-check"))
    with mlflow.start_run() as run:
        mlflow.log_text("hello", "notes/hello.txt")
        log_model(tiny_model_dir)
    assert list(empty_cwd.iterdir()) == []
    artifacts = Path(mlflow.get_run(run.info.run_id).info.artifact_uri.removeprefix("file://"))
    assert artifacts.is_relative_to(store / "mlartifacts")
    assert (artifacts / "notes" / "hello.txt").read_text() == "hello"
    # a second connect (another step of the same pipeline) reuses the experiment
    assert connect(Settings(mlflow_tracking_uri=uri, mlflow_experiment_name="leak-check")) == (
        run.info.experiment_id
    )


def test_without_a_tracking_uri_the_store_is_under_the_local_dir(empty_cwd, no_tracking_uri, tmp_path):
    settings = Settings(local_dir=tmp_path / "local", mlflow_experiment_name="e")
    assert tracking_uri(settings) == f"sqlite:///{(tmp_path / 'local' / 'mlflow.db').resolve()}"
    connect(settings)
    assert (tmp_path / "local" / "mlflow.db").is_file()
    assert list(empty_cwd.iterdir()) == []


def test_a_tracking_uri_set_in_the_process_is_kept(monkeypatch, tmp_path):
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(mlflow, "is_tracking_uri_set", lambda: True)
    monkeypatch.setattr(mlflow, "get_tracking_uri", lambda: "http://set-in-process:5000")
    assert tracking_uri(Settings(local_dir=tmp_path)) == "http://set-in-process:5000"
    assert tracking_uri(Settings(mlflow_tracking_uri="http://settings:5000")) == "http://settings:5000"


def test_the_server_defaults_follow_the_local_dir(empty_cwd, no_tracking_uri, monkeypatch, tmp_path):
    from serving.app import _tracking_uri
    from serving.settings import ServeSettings

    monkeypatch.setenv("EMOTION_LOCAL_DIR", str(tmp_path / "local"))
    monkeypatch.delenv("SERVE_CACHE_DIR")
    assert ServeSettings().cache_dir == tmp_path / "local" / "cache" / "serving"
    assert _tracking_uri() == f"sqlite:///{(tmp_path / 'local' / 'mlflow.db').resolve()}"
    assert list(empty_cwd.iterdir()) == []


def test_mlflow_process_state_is_reset_to_the_session_baseline(mlflow_env_baseline, tmp_path):
    """mlflow.set_*_uri write os.environ (for subprocesses); a test's store must not outlive it."""
    import os

    import mlflow

    other = f"sqlite:///{tmp_path}/other.db"
    mlflow.set_tracking_uri(other)
    mlflow.set_registry_uri(other)
    mlflow.set_registry_uri(None)  # what a fixture's cleanup does: the env var stays behind
    assert os.environ["MLFLOW_REGISTRY_URI"] == other
    reset_mlflow_process_state(mlflow_env_baseline)
    assert {name: os.environ.get(name) for name in mlflow_env_baseline} == mlflow_env_baseline
    assert mlflow.get_tracking_uri() == mlflow_env_baseline["MLFLOW_TRACKING_URI"]
    assert mlflow.get_registry_uri() == mlflow_env_baseline["MLFLOW_TRACKING_URI"]
