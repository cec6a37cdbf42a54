"""retryStrategy: a flaky step is retried; a step reporting bad input (exit 2) is not."""

from __future__ import annotations

import pytest

from pipelines.local_runner.errors import WorkflowError
from pipelines.local_runner.process import Attempt
from pipelines.local_runner.retry import RetryStrategy


def _lines(path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_flaky_step_succeeds_on_retry(run_workflow, work_dir):
    out = run_workflow("retry.yaml", "--param", f"work-dir={work_dir}", "--param", "fail-times=1")
    assert out.exit_code == 0, out.output
    assert out.task("flaky")["phase"] == "succeeded"
    assert out.task("flaky")["attempts"] == 2
    assert _lines(work_dir / "flaky.attempts") == 2
    log = (out.run_dir / "logs" / "flaky.log").read_text()
    assert "attempt 1 fails" in log and "attempt 2 works" in log


def test_retries_stop_at_the_limit(run_workflow, work_dir):
    out = run_workflow("retry.yaml", "--param", f"work-dir={work_dir}", "--param", "fail-times=10")
    assert out.exit_code == 1
    assert out.task("flaky")["attempts"] == 4  # limit 3 = 1 + 3 attempts
    assert out.task("flaky")["exit_code"] == 1
    assert "task flaky failed (exit code 1)" in out.output
    assert "attempt 4 fails" in out.output  # the log tail is shown


def test_retry_expression_skips_bad_input(run_workflow, work_dir):
    out = run_workflow("retry.yaml", "--param", f"work-dir={work_dir}", "--param", "bad-input=true")
    assert out.exit_code == 1
    assert out.task("strict")["exit_code"] == 2
    assert _lines(work_dir / "strict.attempts") == 1  # expression asInt(lastRetry.exitCode) != 2


def _attempt(status: str, code: int | None) -> Attempt:
    return Attempt(exit_code=code, status=status, message="", stdout="", duration=1.0)


def test_policies_choose_what_is_retried():
    failed, errored = _attempt("Failed", 1), _attempt("Error", None)
    on_failure = RetryStrategy.from_spec({"limit": 2}, "t")
    assert on_failure.should_retry(failed, 1, 0)[0] and not on_failure.should_retry(errored, 1, 0)[0]
    on_error = RetryStrategy.from_spec({"limit": 2, "retryPolicy": "OnError"}, "t")
    assert on_error.should_retry(errored, 1, 0)[0] and not on_error.should_retry(failed, 1, 0)[0]
    always = RetryStrategy.from_spec({"limit": "2", "retryPolicy": "Always"}, "t")
    assert always.should_retry(failed, 2, 0)[0] and not always.should_retry(failed, 3, 0)[0]


def test_backoff_grows_and_respects_cap_and_max_duration():
    spec = {"limit": 5, "backoff": {"duration": "10s", "factor": 2, "cap": "30s", "maxDuration": "1m"}}
    strategy = RetryStrategy.from_spec(spec, "t")
    failed = _attempt("Failed", 1)
    assert strategy.should_retry(failed, 1, 0) == (True, 10)
    assert strategy.should_retry(failed, 2, 0) == (True, 20)
    assert strategy.should_retry(failed, 3, 0) == (True, 30)  # capped
    assert strategy.should_retry(failed, 3, 45) == (False, 0)  # would start after maxDuration


def test_invalid_retry_strategy_is_reported():
    with pytest.raises(WorkflowError, match="retryPolicy"):
        RetryStrategy.from_spec({"limit": 1, "retryPolicy": "Sometimes"}, "task x")
    with pytest.raises(WorkflowError, match="duration"):
        RetryStrategy.from_spec({"limit": 1, "backoff": {"duration": "soon"}}, "task x")
