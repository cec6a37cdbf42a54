"""Behaviour of the served model that holds even for the untrained tiny model: invariances.

Correctness ("i am furious" -> anger) needs a trained model: fine-tuning MiniLM here would take
well over a minute on the shared 2-core CI machine, so it is checked by the end-to-end demo
(`make demo` serves the trained champion and asks it the skeleton's sentences).
"""

from __future__ import annotations

import pytest

BASE = "i am furious about the way they treated me"
VARIANTS = [
    "I AM FURIOUS ABOUT THE WAY THEY TREATED ME",
    "I am Furious about the way They treated me",
    "  i am furious about the way they treated me  ",
    "i   am\tfurious about\nthe way they treated me",
]


def _scores(client, texts):
    body = client.post("/predict", json={"texts": texts, "all_scores": True}).json()
    return [p["scores"] for p in body["predictions"]]


@pytest.mark.parametrize("variant", VARIANTS)
def test_casing_and_whitespace_do_not_change_the_prediction(client, variant):
    base, other = _scores(client, [BASE, variant])
    assert list(base) == list(other)  # same ranking of emotions
    for name, score in base.items():
        assert other[name] == pytest.approx(score, abs=1e-5)


def test_the_same_text_gets_the_same_answer_every_time(client):
    first = _scores(client, [BASE] * 5)
    assert all(s == first[0] for s in first)
    assert _scores(client, [BASE])[0] == pytest.approx(first[0], abs=1e-5)
