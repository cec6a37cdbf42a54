"""shared.progress: Argo's `N/M` progress file, the status line beside it, rate limiting."""

from __future__ import annotations

import logging
import time

from shared.progress import (
    PROGRESS_ENV,
    Progress,
    format_progress,
    links_path,
    parse_progress,
    status_path,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_format_is_what_argo_reads():
    assert format_progress(3, 10) == "3/10"
    assert format_progress(12, 10) == "10/10"  # never N > M
    assert format_progress(-1, 0) == "0/0"
    assert parse_progress("3/10") == (3, 10)
    assert parse_progress("3/10\n") == (3, 10)
    for bad in ("", "3", "3/", "1.5/2", "11/10", "a/b", "3 / 10 / 2"):
        assert parse_progress(bad) is None


def test_from_env_uses_the_argo_variable(tmp_path):
    path = tmp_path / "progress"
    assert Progress.from_env({PROGRESS_ENV: str(path)}).path == path
    assert not Progress.from_env({}).enabled
    Progress.from_env({}).update(done=1, total=2)  # a no-op reporter accepts everything


def test_writes_n_of_m_status_and_links(tmp_path, caplog):
    path = tmp_path / "progress"
    clock = FakeClock()
    p = Progress(path, min_interval=1.0, log_interval=0.0, clock=clock)
    with caplog.at_level(logging.INFO, logger="shared.progress"):
        p.set_total(10)
        assert path.read_text() == "0/10"
        p.status("warming up\nstill")
        p.link("mlflow", "http://mlflow:5000/#/experiments/1/runs/abc")
        clock.now = 2.0
        p.advance(4)
    assert path.read_text() == "4/10"
    assert status_path(path).read_text() == "warming up still\n"
    assert links_path(path).read_text() == "mlflow\thttp://mlflow:5000/#/experiments/1/runs/abc\n"
    assert "warming up still" in caplog.text and "http://mlflow:5000" in caplog.text
    assert not list(tmp_path.glob(".*tmp"))  # atomic writes leave no temporaries


def test_rate_limited_but_the_last_value_arrives(tmp_path):
    path = tmp_path / "progress"
    p = Progress(path, min_interval=0.3)
    p.set_total(100)
    for _ in range(50):
        p.advance(1)
    assert parse_progress(path.read_text())[0] < 50  # held back
    deadline = time.monotonic() + 5
    while path.read_text() != "50/100" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert path.read_text() == "50/100"


def test_n_never_decreases_and_m_shrinks_not_below_n(tmp_path):
    path = tmp_path / "progress"
    p = Progress(path, min_interval=0.0)
    p.update(done=5, total=10)
    p.update(done=3)
    assert path.read_text() == "5/10"
    p.set_total(4)  # shrinking below what is done: N stays, M follows N
    assert path.read_text() == "5/5"
    p.update(done=6, total=8)
    assert path.read_text() == "6/8"
    p.finish()
    assert path.read_text() == "8/8"


def test_finish_without_a_total_is_one_of_one(tmp_path):
    path = tmp_path / "progress"
    Progress(path).finish()
    assert path.read_text() == "1/1"


def test_pickled_reporter_is_a_no_op(tmp_path):
    import pickle

    p = pickle.loads(pickle.dumps(Progress(tmp_path / "progress", unit="rows")))
    p.update(done=1, total=2)
    assert not p.enabled and not (tmp_path / "progress").exists()
