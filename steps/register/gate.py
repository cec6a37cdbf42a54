"""The champion/challenger decision: promote unless the challenger is worse than the champion by
more than a tolerance on any gate metric (accuracy and macro-F1).

Accuracy alone lets a model that gives up on the rare classes (surprise, love) through, because
the classes are imbalanced; macro-F1 weighs every class alike, so the gate checks both. The
decision record (`decision_record`) adds the per-class recall of both models, so a reviewer sees
which classes moved.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

GATE_METRICS = ("accuracy", "f1_macro")


@dataclass(frozen=True)
class MetricCheck:
    """One gate metric: the challenger against the champion, within `tolerance` or not."""

    metric: str
    challenger: float
    champion: float | None
    tolerance: float
    passed: bool

    @property
    def delta(self) -> float | None:
        return None if self.champion is None else self.challenger - self.champion


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str
    checks: tuple[MetricCheck, ...] = ()


def _as_scores(value: float | Mapping[str, float] | None, metric: str) -> dict[str, float] | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        return {k: float(v) for k, v in value.items()}
    return {metric: float(value)}


def decide(
    challenger: float | Mapping[str, float],
    champion: float | Mapping[str, float] | None,
    *,
    tolerance: float | None = None,
    tolerances: Mapping[str, float] | None = None,
    metric: str = "accuracy",
    champion_version: str | int | None = None,
) -> GateDecision:
    """Promote when there is no champion, or when on every gate metric
    `challenger >= champion - tolerance` (that metric's tolerance).

    Scores are either one float per side (with `metric` and `tolerance`: a one-metric gate) or
    mappings metric -> score with `tolerances` metric -> tolerance; the metrics checked are the
    keys of `tolerances`, in order, and both sides must have them. A tolerance lets a retrain on
    new data replace a model that scores a hair higher on noise; anything worse than that keeps
    the champion where it is.
    """
    if tolerances is None:
        if tolerance is None:
            raise ValueError("give tolerance (one metric) or tolerances (metric -> tolerance)")
        tolerances = {metric: tolerance}
    tolerances = {k: float(v) for k, v in tolerances.items()}
    if not tolerances:
        raise ValueError("tolerances must name at least one metric")
    for name, tol in tolerances.items():
        if tol < 0:
            raise ValueError(f"tolerance must be >= 0, got {tol} for {name}")
    ours = _as_scores(challenger, metric) or {}
    theirs = _as_scores(champion, metric)
    for side, scores in (("challenger", ours), ("champion", theirs)):
        missing = [m for m in tolerances if scores is not None and m not in scores]
        if missing:
            raise ValueError(f"{side} scores lack the gate metric(s) {', '.join(missing)}")
    if theirs is None:
        shown = ", ".join(f"{m} {ours[m]:.4f}" for m in tolerances)
        checks = tuple(MetricCheck(m, ours[m], None, tolerances[m], True) for m in tolerances)
        return GateDecision(True, f"no champion yet: the first model becomes champion ({shown})", checks)
    who = f"champion v{champion_version}" if champion_version is not None else "champion"
    checks, phrases = [], []
    for m, tol in tolerances.items():
        delta = ours[m] - theirs[m]
        # round away float noise so that a delta of exactly -tolerance counts as "not worse by more"
        passed = round(delta + tol, 12) >= 0
        checks.append(MetricCheck(m, ours[m], theirs[m], tol, passed))
        comparison = f"challenger {m} {ours[m]:.4f} vs {who} {theirs[m]:.4f} (delta {delta:+.4f})"
        verdict = f", within tolerance {tol}" if passed else f" is worse by more than tolerance {tol}"
        phrases.append(comparison + verdict)
    promote = all(c.passed for c in checks)
    reason = ("promoted: " if promote else "not promoted: ") + "; ".join(phrases)
    return GateDecision(promote, reason, tuple(checks))


def decision_record(
    decision: GateDecision,
    challenger: Any,
    champion: Any | None,
    *,
    champion_version: str | int | None = None,
) -> dict[str, Any]:
    """The decision as a JSON-able record: every check, and both models' per-class recall.

    `challenger` and `champion` are evaluation results with `per_class` (label, recall, ...),
    e.g. `steps.register.evaluate.EvalMetrics`.
    """

    def recall(metrics: Any | None) -> dict[str, float] | None:
        if metrics is None:
            return None
        return {c.label: round(float(c.recall), 6) for c in metrics.per_class}

    ours, theirs = recall(challenger), recall(champion)
    delta = None if theirs is None else {k: round(v - theirs.get(k, 0.0), 6) for k, v in (ours or {}).items()}
    return {
        "promoted": decision.promote,
        "reason": decision.reason,
        "champion_version": None if champion_version is None else str(champion_version),
        "checks": [{**asdict(c), "delta": c.delta} for c in decision.checks],
        "per_class_recall": {
            "challenger": ours,
            "champion": theirs,
            "delta": delta,
        },
    }
