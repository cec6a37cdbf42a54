"""The champion/challenger decision: promote unless the challenger is worse by more than a tolerance."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str


def decide(
    challenger: float,
    champion: float | None,
    *,
    tolerance: float,
    metric: str = "accuracy",
    champion_version: str | int | None = None,
) -> GateDecision:
    """Promote when there is no champion, or when `challenger >= champion - tolerance`.

    The tolerance lets a retrain on new data replace a model that scores a hair higher on
    noise; anything worse than that keeps the champion where it is.
    """
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    if champion is None:
        reason = f"no champion yet: the first model becomes champion ({metric} {challenger:.4f})"
        return GateDecision(True, reason)
    who = f"champion v{champion_version}" if champion_version is not None else "champion"
    delta = challenger - champion
    comparison = f"challenger {metric} {challenger:.4f} vs {who} {champion:.4f} (delta {delta:+.4f})"
    # round away float noise so that a delta of exactly -tolerance counts as "not worse by more"
    if round(delta + tolerance, 12) >= 0:
        return GateDecision(True, f"promoted: {comparison}, within tolerance {tolerance}")
    return GateDecision(False, f"not promoted: {comparison} is worse by more than tolerance {tolerance}")
