"""The search's progress in trial epochs: monotonic N, shrinking M, M/M at the end (no Ray run)."""

from __future__ import annotations

from shared.progress import Progress, parse_progress, status_path
from steps.hpo.progress import ProgressCallback, SearchProgress, mlflow_run_url, report_links
from steps.hpo.trainable import NUM_EPOCHS, TIME_ATTR


def _result(epoch: int, acc: float, num_epochs: int = 4) -> dict:
    return {TIME_ATTR: epoch, "val_accuracy": acc, NUM_EPOCHS: num_epochs}


def test_asha_stops_failures_and_short_trials_end_at_m_of_m(tmp_path):
    path = tmp_path / "progress"
    progress = Progress(path, min_interval=0.0)
    seen: list[tuple[int, int]] = []
    search = SearchProgress(progress, num_samples=4, max_epochs=4)

    def snap():
        seen.append(parse_progress(path.read_text()))

    snap()
    assert seen[-1] == (0, 16)
    for t in ("a", "b", "c", "d"):
        search.started(t)
    search.result("a", _result(1, 0.30))
    search.result("b", _result(1, 0.40))
    search.result("c", _result(1, 0.20, num_epochs=2))  # asks for 2 epochs only: M gives back 2
    snap()
    assert seen[-1] == (3, 14)
    search.ended("b", failed=False)  # ASHA stops b after 1 epoch: M gives back 3
    snap()
    assert seen[-1] == (3, 11)
    search.result("d", _result(1, 0.50))
    search.ended("d", failed=True)  # d fails for good after 1 epoch
    search.result("c", _result(2, 0.35, num_epochs=2))
    search.ended("c")
    for epoch in (2, 3, 4):
        search.result("a", _result(epoch, 0.3 + 0.1 * epoch))
        snap()
    search.ended("a")
    progress.finish()
    snap()
    dones = [n for n, _ in seen]
    assert dones == sorted(dones)
    assert all(n <= m for n, m in seen)
    assert seen[-1] == (8, 8)
    line = status_path(path).read_text()
    assert "0 running, 2 done, 1 stopped early, 1 failed" in line
    assert "best val_accuracy 0.7000 (trial a, epoch 4)" in line


def test_a_restored_trial_does_not_count_epochs_twice(tmp_path):
    progress = Progress(tmp_path / "progress", min_interval=0.0)
    search = SearchProgress(progress, num_samples=1, max_epochs=3)
    search.result("a", _result(2, 0.5, num_epochs=3))
    search.result("a", _result(1, 0.4, num_epochs=3))  # retried from an earlier checkpoint
    assert progress.value == (2, 3)


def test_callback_pickles_without_its_reporter(tmp_path):
    import pickle

    callback = ProgressCallback(Progress(tmp_path / "progress"), 2, 2)
    restored = pickle.loads(pickle.dumps(callback))
    assert not restored.search.progress.enabled


def test_links(tmp_path):
    assert mlflow_run_url("http://mlflow:5000/", "3", "abc") == "http://mlflow:5000/#/experiments/3/runs/abc"
    assert mlflow_run_url("sqlite:///x.db", "3", "abc") is None
    progress = Progress(tmp_path / "progress")
    report_links(progress, "sqlite:///x.db", "3", "abc", "127.0.0.1:8265")
    assert "make mlflow-ui" in progress.links["mlflow parent run"]
    assert progress.links["ray dashboard"] == "http://127.0.0.1:8265"
    report_links(Progress(None), "http://m:5000", "1", "r", None)  # no dashboard: no link, no error
