"""Malformed input always gets a 4xx that names the problem, never a 5xx.

Hand-written cases cover each rule; property-based cases (hypothesis) throw arbitrary JSON values
and raw bytes at /predict. `test_openapi_fuzz.py` adds schemathesis against our own OpenAPI spec.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

JSON = {"content-type": "application/json"}

# (body bytes, headers, expected status, a phrase the detail must contain)
HAND_WRITTEN = [
    (b'{"texts": []}', JSON, 422, "at least 1 item"),
    (json.dumps({"texts": ["x"] * 65}).encode(), JSON, 422, "too many texts"),
    (b'{"texts": [""]}', JSON, 422, "texts[0] is empty"),
    (b'{"texts": ["ok", "   "]}', JSON, 422, "texts[1] is empty or whitespace-only"),
    (b'{"texts": ["\\n\\t "]}', JSON, 422, "whitespace-only"),
    (json.dumps({"texts": ["a" * 2001]}).encode(), JSON, 422, "more than the limit of 2000"),
    (b'{"texts": [1]}', JSON, 422, "texts.0: Input should be a valid string"),
    (b'{"texts": [null]}', JSON, 422, "valid string"),
    (b'{"texts": [["nested"]]}', JSON, 422, "valid string"),
    (b'{"texts": [{"a": 1}]}', JSON, 422, "valid string"),
    (b'{"texts": [true]}', JSON, 422, "valid string"),
    (b'{"texts": "just a string"}', JSON, 422, "valid list"),
    (b'{"texts": null}', JSON, 422, "valid list"),
    (b'{"texts": 42}', JSON, 422, "valid list"),
    (b'{"texts": {"0": "a"}}', JSON, 422, "valid list"),
    (b"{}", JSON, 422, "texts: Field required"),
    (b'{"text": ["hi"]}', JSON, 422, "Field required"),
    (b'{"texts": ["hi"], "extra": 1}', JSON, 422, "Extra inputs"),
    (b'{"texts": ["hi"], "top_k": 0}', JSON, 422, "greater than or equal to 1"),
    (b'{"texts": ["hi"], "top_k": -3}', JSON, 422, "greater than or equal to 1"),
    (b'{"texts": ["hi"], "top_k": 7}', JSON, 422, "only 6 emotions"),
    (b'{"texts": ["hi"], "top_k": "2"}', JSON, 422, "valid integer"),
    (b'{"texts": ["hi"], "top_k": 2.5}', JSON, 422, "valid integer"),
    (b'{"texts": ["hi"], "top_k": true}', JSON, 422, "valid integer"),
    (b'{"texts": ["hi"], "top_k": 1e400}', JSON, 422, "valid integer"),
    (b'{"texts": ["hi"], "all_scores": "yes"}', JSON, 422, "valid boolean"),
    (b'{"texts": ["hi"], "all_scores": 1}', JSON, 422, "valid boolean"),
    (b'{"texts": ["\\ud800"]}', JSON, 422, "lone surrogate"),
    (b"[]", JSON, 422, "valid dictionary"),
    (b'["hi"]', JSON, 422, "valid dictionary"),
    (b"null", JSON, 422, "valid dictionary"),
    (b'"texts"', JSON, 422, "valid dictionary"),
    (b"{bad json", JSON, 422, "not valid JSON"),
    (b'{"texts": ["a",]}', JSON, 422, "not valid JSON"),
    (b"", JSON, 422, "Field required"),
    (b'{"texts": ["a"]', JSON, 422, "not valid JSON"),
    (b'"\xff\xfe"', JSON, 400, "could not be parsed"),
    (b"[" * 50_000, JSON, 400, "could not be parsed"),
    (b'{"texts": ["hi"]}', {"content-type": "text/plain"}, 415, "must be application/json"),
    (b'{"texts": ["hi"]}', {"content-type": "application/x-www-form-urlencoded"}, 415, "application/json"),
    (b'{"texts": ["hi"]}', {"content-type": "multipart/form-data; boundary=x"}, 415, "application/json"),
    (b'{"texts": ["hi"]}', {"content-type": "application/xml"}, 415, "application/json"),
    (b'{"texts": ["hi"]}', {}, 415, "got none"),
    (b"x" * 1_000_001, JSON, 413, "the limit is 1000000 bytes"),
    (json.dumps({"texts": ["a" * 1000] * 1200}).encode(), JSON, 413, "SERVE_MAX_BODY_BYTES"),
]


@pytest.mark.parametrize("body, headers, status, phrase", HAND_WRITTEN)
def test_hand_written_bad_requests_get_a_4xx_naming_the_problem(client, body, headers, status, phrase):
    response = client.post("/predict", content=body, headers=headers)
    assert response.status_code == status, response.text
    assert phrase in response.json()["detail"]


def test_streamed_body_over_the_limit_is_cut_off_with_413(client):
    """Without Content-Length (chunked), the cap applies while the body streams in."""

    def chunks():
        for _ in range(40):
            yield b"x" * 50_000

    response = client.post("/predict", content=chunks(), headers=JSON)
    assert response.status_code == 413 and "more than" in response.json()["detail"]


def test_bad_content_length_and_wrong_method(client):
    assert client.get("/predict").status_code == 405
    assert client.put("/predict", json={"texts": ["hi"]}).status_code == 405
    assert client.get("/no-such-endpoint").status_code == 404


def test_the_server_keeps_answering_after_hostile_input(client):
    for body, headers, _, _ in HAND_WRITTEN[:10]:
        client.post("/predict", content=body, headers=headers)
    assert client.post("/predict", json={"texts": ["still here"]}).status_code == 200


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=20,
)
predict_like = st.fixed_dictionaries(
    {"texts": st.one_of(json_values, st.lists(st.one_of(st.text(max_size=40), json_values), max_size=70))},
    optional={"top_k": json_values, "all_scores": json_values, "extra": json_values},
)


def _check_response(response, sent_texts=None) -> None:
    assert response.status_code < 500, response.text
    body = response.json()
    if response.status_code == 200:
        assert len(body["predictions"]) == len(sent_texts)
    else:
        assert 400 <= response.status_code < 500 and body["detail"]


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(payload=st.one_of(json_values, predict_like))
def test_property_arbitrary_json_never_gets_a_5xx(client, payload):
    response = client.post("/predict", content=json.dumps(payload).encode(), headers=JSON)
    texts = payload.get("texts") if isinstance(payload, dict) else None
    _check_response(response, texts)


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(raw=st.binary(max_size=300), content_type=st.sampled_from(["application/json", "text/plain", ""]))
def test_property_arbitrary_bytes_never_get_a_5xx(client, raw, content_type):
    headers = {"content-type": content_type} if content_type else {}
    response = client.post("/predict", content=raw, headers=headers)
    assert 400 <= response.status_code < 500, response.text
