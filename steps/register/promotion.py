"""Moving the `champion` alias safely, and keeping why it moved.

Two register steps never gate at the same time: the register template holds an Argo
`synchronization` mutex named after the model (the local runner honours it across the runs of a
checkout). MLflow has no conditional ("compare-and-set") alias update, so as a second line of
defence (a step run outside the workflow, a mutex misconfigured) the move is optimistic:

1. right before moving the alias, re-read it; if another run moved it since the gate ran, run
   the gate again against the new champion (and again, if it moves again);
2. move it, then read it back; if another step overwrote it meanwhile, run the gate against that
   version and move it back only if ours wins; the result says promoted only if the move stood.

Every gate run is recorded on the challenger's model version (tag `promotion_decision`: the last
decision, and `promotion_history`: all of them): compared versions, both models' metrics, the
metric, the tolerance, the outcome, the workflow uid and the time. The registered model carries
`champion_promoted_by` (version, workflow uid, time) for the current champion.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from steps.register.gate import GateDecision
from steps.register.registry import CHAMPION_ALIAS, version_by_alias

log = logging.getLogger(__name__)

DECISION_TAG = "promotion_decision"
HISTORY_TAG = "promotion_history"
PROMOTED_BY_TAG = "champion_promoted_by"
MAX_ROUNDS = 5
_MAX_TAG_CHARS = 5000  # MLflow's limit on a tag value

# (decision, champion version entity or None, champion metrics or None): what the gate returns
GateOutcome = tuple[GateDecision, Any, Any]


@dataclass
class Promotion:
    """The final decision and every decision taken on the way (newest last)."""

    decision: GateDecision
    champion: Any
    champion_metrics: Any
    promoted: bool
    records: list[dict[str, Any]] = field(default_factory=list)


def _version_of(entity: Any) -> str | None:
    return None if entity is None else str(entity.version)


def _metrics(metrics: Any) -> dict[str, float] | None:
    if metrics is None:
        return None
    return {k: float(getattr(metrics, k)) for k in ("accuracy", "f1_macro") if hasattr(metrics, k)}


def promotion_record(
    *,
    version: str,
    outcome: GateOutcome,
    challenger_metrics: Any,
    metric: str,
    tolerance: float | dict[str, float],
    workflow_uid: str | None,
    trigger: str,
) -> dict[str, Any]:
    """One gate run of a promotion as the `promotion_decision` / `promotion_history` tags keep it."""
    decision, champion, champion_metrics = outcome
    return {
        "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "workflow_uid": workflow_uid,
        "challenger_version": version,
        "champion_version": _version_of(champion),
        "challenger_metrics": _metrics(challenger_metrics),
        "champion_metrics": _metrics(champion_metrics),
        "metric": metric,
        "tolerance": tolerance,
        "promote": decision.promote,
        "reason": decision.reason,
        "trigger": trigger,
    }


def promote(
    client,
    model_name: str,
    version: str,
    first: GateOutcome,
    regate: Callable[[], GateOutcome],
    *,
    challenger_metrics: Any,
    metric: str,
    tolerance: float | dict[str, float],
    workflow_uid: str | None,
    max_rounds: int = MAX_ROUNDS,
) -> Promotion:
    """Move `champion` to `version` if the gate says so, compare-and-set style; record every decision."""
    version = str(version)

    def record(outcome: GateOutcome, trigger: str) -> dict[str, Any]:
        rec = promotion_record(
            version=version,
            outcome=outcome,
            challenger_metrics=challenger_metrics,
            metric=metric,
            tolerance=tolerance,
            workflow_uid=workflow_uid,
            trigger=trigger,
        )
        log.info("promotion decision (%s): %s", trigger, outcome[0].reason)
        return rec

    outcome = first
    records = [record(outcome, "gate")]
    promoted = False
    for _ in range(max_rounds):
        decision, champion, _metrics_ = outcome
        if not decision.promote:
            break
        current = version_by_alias(client, model_name, CHAMPION_ALIAS)
        if _version_of(current) not in (_version_of(champion), version):
            outcome = regate()  # the champion moved since the gate ran: compare with the new one
            records.append(record(outcome, f"champion moved to v{_version_of(current)} before promoting"))
            continue
        client.set_registered_model_alias(model_name, CHAMPION_ALIAS, version)
        now = version_by_alias(client, model_name, CHAMPION_ALIAS)  # did our move stand?
        if _version_of(now) == version:
            promoted = True
            break
        outcome = regate()  # overwritten by a concurrent step: compare with what overwrote us
        records.append(record(outcome, f"champion overwritten by v{_version_of(now)} after promoting"))
    else:
        log.warning("champion alias of %s kept moving; v%s not promoted", model_name, version)
    if not promoted:
        decision = outcome[0]
        if decision.promote:  # it won its gate but the alias is elsewhere (rounds exhausted)
            decision = GateDecision(False, f"not promoted: the champion kept moving ({decision.reason})")
            outcome = (decision, outcome[1], outcome[2])
    records[-1]["outcome"] = "promoted" if promoted else "not promoted"
    _write_records(client, model_name, version, records, promoted, workflow_uid)
    return Promotion(outcome[0], outcome[1], outcome[2], promoted, records)


def _write_records(client, model_name, version, records, promoted: bool, workflow_uid) -> None:
    history = _previous_history(client, model_name, version) + records
    text = json.dumps(history, sort_keys=True)
    while len(text) > _MAX_TAG_CHARS and len(history) > 1:  # keep the newest that fit
        history = history[1:]
        text = json.dumps(history, sort_keys=True)
    client.set_model_version_tag(model_name, version, HISTORY_TAG, text)
    client.set_model_version_tag(
        model_name, version, DECISION_TAG, json.dumps(records[-1], sort_keys=True)[:_MAX_TAG_CHARS]
    )
    if promoted:
        client.set_registered_model_tag(
            model_name,
            PROMOTED_BY_TAG,
            json.dumps({"version": version, "workflow_uid": workflow_uid, "at": records[-1]["at"]}),
        )


def _previous_history(client, model_name: str, version: str) -> list[dict[str, Any]]:
    """Decisions recorded by an earlier run of this step for the same version (a retry)."""
    try:
        text = client.get_model_version(model_name, version).tags.get(HISTORY_TAG)
        return list(json.loads(text)) if text else []
    except Exception:  # noqa: BLE001 - an unreadable history starts afresh
        return []
