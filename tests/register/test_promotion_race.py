"""Two register steps race for the champion alias (real `mlflow server`): compare-and-set promotion.

On a cluster the register template's mutex keeps two gates apart; this is the second line of
defence for steps that run outside it. Both gate against the same champion (a barrier forces the
lost-update interleaving), then the worse one re-reads the champion only after the better one moved
it: it must re-gate against the better model and lose. Both decisions are recorded on their versions.
"""

from __future__ import annotations

import json
import threading

import pytest

from steps.register import promotion
from steps.register.core import RegisterInput, register

from .helpers import Trial, unique_model_name

pytestmark = pytest.mark.slow
LIMIT = 300


def _client():
    from mlflow import MlflowClient

    return MlflowClient()


def test_racing_register_steps_leave_the_better_model_champion_and_record_both(
    make_search, constant_model_dirs, register_settings, dataset_dir, monkeypatch
):
    name = unique_model_name("race")
    models = constant_model_dirs

    def run(search, uid: str):
        inp = RegisterInput(
            parent_run_id=search.parent_run_id,
            dataset_dir=dataset_dir,
            model_name=name,
            accuracy_tolerance=0.0,
            f1_macro_tolerance=0.0,
            eval_limit=LIMIT,
        )
        return register(inp, register_settings.model_copy(update={"argo_workflow_uid": uid}))

    # v1: a weak champion (always "surprise"); then "joy" (the commonest label: best) races "sadness".
    first = run(make_search([Trial(models["surprise"], 0.5)]), "wf-first")
    assert first.promoted and first.version == 1
    better = make_search([Trial(models["joy"], 0.5)], workflow_uid="wf-better")
    worse = make_search([Trial(models["sadness"], 0.5)], workflow_uid="wf-worse")

    barrier = threading.Barrier(2, timeout=120)
    better_done = threading.Event()
    original = promotion.version_by_alias
    reads: dict[str, int] = {}

    def racing_read(client, model_name, alias):
        me = threading.current_thread().name
        reads[me] = reads.get(me, 0) + 1
        if reads[me] == 1:  # the re-read before moving: both have gated against v1 by now
            barrier.wait()
            if me == "worse":  # and the worse one re-reads only after the better one moved
                assert better_done.wait(timeout=300)
        return original(client, model_name, alias)

    monkeypatch.setattr(promotion, "version_by_alias", racing_read)
    results: dict[str, object] = {}
    errors: list[BaseException] = []

    def target(key, search, uid):
        try:
            results[key] = run(search, uid)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            if key == "better":
                better_done.set()

    threads = [
        threading.Thread(target=target, args=("better", better, "wf-better"), name="better"),
        threading.Thread(target=target, args=("worse", worse, "wf-worse"), name="worse"),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors, errors
    r_better, r_worse = results["better"], results["worse"]

    client = _client()
    champion = client.get_model_version_by_alias(name, "champion").version
    assert str(champion) == str(r_better.version), "the better model is the champion"

    # Both decisions are recorded, with what was compared, the metrics, tolerance and workflow uid.
    for result, uid in ((r_better, "wf-better"), (r_worse, "wf-worse")):
        version = client.get_model_version(name, str(result.version))
        last = json.loads(version.tags[promotion.DECISION_TAG])
        history = json.loads(version.tags[promotion.HISTORY_TAG])
        assert last == history[-1] and last["workflow_uid"] == uid
        assert last["challenger_version"] == str(result.version)
        assert last["tolerance"] == {"accuracy": 0.0, "f1_macro": 0.0}
        assert last["metric"] == "accuracy,f1_macro"
        assert last["challenger_metrics"]["accuracy"] == pytest.approx(result.challenger_accuracy)
        assert history[0]["champion_version"] == "1"  # both gates first ran against v1
    worse_history = json.loads(
        client.get_model_version(name, str(r_worse.version)).tags[promotion.HISTORY_TAG]
    )
    # the worse model was, in the end, compared with the better one and lost
    assert worse_history[-1]["champion_version"] == str(r_better.version)
    assert worse_history[-1]["promote"] is False
    assert worse_history[-1]["outcome"] == "not promoted"
    promoted_by = json.loads(client.get_registered_model(name).tags[promotion.PROMOTED_BY_TAG])
    assert promoted_by == {
        "version": str(r_better.version),
        "workflow_uid": "wf-better",
        "at": promoted_by["at"],
    }
