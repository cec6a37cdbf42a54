"""Argo retryStrategy semantics for local processes.

Locally a non-zero exit is a *failure* (Argo's Failed) and a process that could not start or was
killed by a signal is an *error* (Argo's Error). `retryPolicy` picks which of them are retried
(Always: both; OnFailure, the default: failures; OnError/OnTransientError: errors), `expression`
(expr-lang as Argo evaluates it, `exprlang`: `lastRetry.exitCode`, `.status`, `.duration` and
`.message` are strings, so `lastRetry.exitCode == '75'` or `asInt(lastRetry.exitCode) == 75`) must
also hold; an expression that cannot be evaluated errors the step, and `backoff`
spaces attempts: duration * factor^n, capped by `cap`, and no retry starts after `maxDuration`.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.local_runner.cache import parse_duration
from pipelines.local_runner.errors import WorkflowError
from pipelines.local_runner.exprlang import ExprError, evaluate, nest
from pipelines.local_runner.process import Attempt

_POLICIES = {
    "Always": {"Failed", "Error"},
    "OnFailure": {"Failed"},
    "OnError": {"Error"},
    "OnTransientError": {"Error"},
}


@dataclass(frozen=True)
class RetryStrategy:
    limit: int = 0
    policy: str = "OnFailure"
    expression: str | None = None
    duration: float = 0.0
    factor: float = 1.0
    cap: float | None = None
    max_duration: float | None = None

    @classmethod
    def from_spec(cls, spec: dict | None, where: str) -> RetryStrategy:
        if spec is None:
            return cls()
        try:
            limit = int(spec.get("limit", 0)) if spec.get("limit") is not None else 10**6  # unset: unlimited
            policy = spec.get("retryPolicy") or "OnFailure"
            if policy not in _POLICIES:
                raise ValueError(f"retryPolicy {policy!r} is not one of {', '.join(_POLICIES)}")
            backoff = spec.get("backoff") or {}
            return cls(
                limit=limit,
                policy=policy,
                expression=spec.get("expression"),
                duration=parse_duration(backoff.get("duration")) or 0.0,
                factor=float(backoff.get("factor", 1) or 1),
                cap=parse_duration(backoff.get("cap")),
                max_duration=parse_duration(backoff.get("maxDuration")),
            )
        except ValueError as exc:
            raise WorkflowError(f"{where}: invalid retryStrategy: {exc}") from None

    def should_retry(self, attempt: Attempt, attempts_done: int, elapsed: float) -> tuple[bool, float]:
        """Whether to run another attempt after `attempt`, and how long to wait first."""
        if attempt.status == "Succeeded" or attempts_done > self.limit:
            return False, 0.0
        if attempt.status not in _POLICIES[self.policy]:
            return False, 0.0
        if self.expression:
            variables = {
                "lastRetry.exitCode": "-1" if attempt.exit_code is None else str(attempt.exit_code),
                "lastRetry.status": attempt.status,
                "lastRetry.duration": str(int(attempt.duration)),
                "lastRetry.message": attempt.message,
            }
            try:
                verdict = evaluate(self.expression, nest(variables))
            except ExprError as exc:
                raise WorkflowError(f"retryStrategy.expression: {exc}") from None
            if not isinstance(verdict, bool):
                raise WorkflowError(
                    f"retryStrategy.expression {self.expression!r} gave {verdict!r}, not a bool"
                )
            if not verdict:
                return False, 0.0
        delay = self.duration * self.factor ** (attempts_done - 1)
        if self.cap is not None:
            delay = min(delay, self.cap)
        if self.max_duration is not None and elapsed + delay > self.max_duration:
            return False, 0.0
        return True, delay
