"""The MLflow scoring-server and Open Inference Protocol v2 routes, called by the real client libraries.

tritonclient (binary-tensor and JSON mode), KServe's v2 REST client and MLflow's scoring-server client
talk to a live Uvicorn server on the tiny model; every answer must match `/predict` for the same texts.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlparse

import httpx
import numpy as np
import pytest

MODEL = "emotion-classifier"
TEXTS = ["i feel wonderful today", "this makes me really angry", "what a surprise"]


@pytest.fixture(scope="module")
def reference(live_server) -> tuple[list[str], np.ndarray]:
    """Labels and probabilities of TEXTS from /predict (all scores, in label-id order)."""
    with httpx.Client(base_url=live_server) as http:
        preds = http.post("/predict", json={"texts": TEXTS, "all_scores": True}).json()["predictions"]
        names = [http.get("/info").json()["labels"][str(i)] for i in range(6)]
    probs = np.array([[p["scores"][n] for n in names] for p in preds])
    return [p["emotion"] for p in preds], probs


def _host_port(url: str) -> tuple[str, int]:
    parsed = urlparse(url)
    return parsed.hostname, parsed.port


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient(live_server, reference, binary):
    import tritonclient.http as triton

    host, port = _host_port(live_server)
    client = triton.InferenceServerClient(url=f"{host}:{port}")
    try:
        assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(MODEL)
        meta = client.get_model_metadata(MODEL)
        assert meta["name"] == MODEL and [o["name"] for o in meta["outputs"]] == ["label", "probabilities"]
        text = triton.InferInput("text", [len(TEXTS)], "BYTES")
        text.set_data_from_numpy(np.array([t.encode() for t in TEXTS], dtype=object), binary_data=binary)
        outputs = [triton.InferRequestedOutput(n, binary_data=binary) for n in ("label", "probabilities")]
        result = client.infer(MODEL, [text], outputs=outputs, request_id="r-1")
        default = client.infer(MODEL, [text])  # no outputs named: all of them, binary
    finally:
        client.close()
    labels, probs = reference
    for res in (result, default):
        assert [x.decode() if isinstance(x, bytes) else x for x in res.as_numpy("label")] == labels
        np.testing.assert_allclose(res.as_numpy("probabilities"), probs, atol=2e-6)
    assert result.get_response()["id"] == "r-1"


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_kserve_v2_rest_client(live_server, reference, binary):
    kserve = pytest.importorskip("kserve", reason="see pyproject.toml: kserve is installed with --no-deps")
    InferenceRESTClient, InferInput = kserve.InferenceRESTClient, kserve.InferInput
    InferRequest, RESTConfig = kserve.InferRequest, kserve.RESTConfig

    async def scenario():
        client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
        try:
            live = await client.is_server_live(live_server)
            ready = await client.is_server_ready(live_server)
            model_ready = await client.is_model_ready(live_server, MODEL)
            inp = InferInput(name="text", shape=[len(TEXTS)], datatype="BYTES")
            inp.set_data_from_numpy(np.array(TEXTS, dtype=object), binary_data=binary)
            request = InferRequest(model_name=MODEL, infer_inputs=[inp], request_id="k-1")
            response = await client.infer(live_server, request, model_name=MODEL)
        finally:
            await client.close()
        return live, ready, model_ready, response

    live, ready, model_ready, response = asyncio.run(scenario())
    assert live and ready and model_ready
    outputs = {o.name: o for o in response.outputs}
    labels, probs = reference
    got = [x.decode() if isinstance(x, bytes) else x for x in outputs["label"].as_numpy().tolist()]
    assert got == labels
    np.testing.assert_allclose(
        np.asarray(outputs["probabilities"].as_numpy(), dtype=np.float64).reshape(probs.shape),
        probs,
        atol=2e-6,
    )


def test_mlflow_scoring_server_client(live_server, reference):
    import pandas as pd
    from mlflow.pyfunc.scoring_server.client import ScoringServerClient

    host, port = _host_port(live_server)
    client = ScoringServerClient(host, port)
    client.wait_server_ready(timeout=30)
    assert client.get_version()
    frame = client.invoke(pd.DataFrame({"text": TEXTS})).get_predictions()
    labels, probs = reference
    assert frame["emotion"].tolist() == labels
    assert {"confidence", "score_joy", "score_anger"} <= set(frame.columns)
    np.testing.assert_allclose(frame["confidence"].to_numpy(), probs.max(axis=1), atol=2e-6)


@pytest.mark.parametrize(
    "body",
    [
        {"dataframe_split": {"columns": ["text"], "data": [[t] for t in TEXTS]}},
        {"dataframe_split": {"columns": ["id", "text"], "data": [[i, t] for i, t in enumerate(TEXTS)]}},
        {"dataframe_records": [{"text": t} for t in TEXTS]},
        {"instances": TEXTS},
        {"inputs": TEXTS},
        {"inputs": {"text": TEXTS}, "params": {}},
    ],
    ids=["split", "split-2-columns", "records", "instances", "inputs", "inputs-named"],
)
def test_invocations_json_formats(live_server, reference, body):
    response = httpx.post(live_server + "/invocations", json=body)
    assert response.status_code == 200, response.text
    assert [p["emotion"] for p in response.json()["predictions"]] == reference[0]


def test_invocations_csv(live_server, reference):
    csv = "id,text\n" + "".join(f'{i},"{t}"\n' for i, t in enumerate(TEXTS))
    response = httpx.post(live_server + "/invocations", content=csv, headers={"content-type": "text/csv"})
    assert response.status_code == 200, response.text
    assert [p["emotion"] for p in response.json()["predictions"]] == reference[0]


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (b"{not json", "application/json", 400),
        (b'{"texts": ["a"]}', "application/json", 400),
        (b'{"instances": ["a"], "inputs": ["b"]}', "application/json", 400),
        (b'{"instances": [1, 2]}', "application/json", 400),
        (b'{"instances": ["  "]}', "application/json", 400),
        (b'{"instances": ["a","b","c","d","e","f","g","h","i"]}', "application/json", 400),  # > max_texts
        (b"a,b\n1,2\n", "text/csv", 400),
        (b"\xff\xfe", "text/csv", 400),
        (b"text\nhi\n", "text/plain", 415),
        (b'{"instances": ["a"]}', "application/json; charset=latin-1", 415),
    ],
)
def test_invocations_bad_input_gets_mlflow_status_codes(live_server, content, content_type, status):
    response = httpx.post(
        live_server + "/invocations", content=content, headers={"content-type": content_type}
    )
    assert response.status_code == status, response.text
    if status == 400:
        assert response.json()["error_code"] == "BAD_REQUEST" and response.json()["message"]


def test_mlflow_ping_and_version(live_server):
    assert httpx.get(live_server + "/ping").status_code == 200
    assert httpx.get(live_server + "/version").text


def test_v2_server_and_model_metadata(live_server):
    server = httpx.get(live_server + "/v2").json()
    assert server["name"] == MODEL and "binary_tensor_data" in server["extensions"]
    assert httpx.get(live_server + "/v2/health/live").json() == {"live": True}
    assert httpx.get(live_server + "/v2/health/ready").json() == {"ready": True}
    meta = httpx.get(live_server + f"/v2/models/{MODEL}").json()
    assert meta["inputs"][0]["datatype"] == "BYTES" and meta["outputs"][1]["shape"] == [-1, 6]
    assert httpx.get(live_server + "/v2/models/other").status_code == 404
    assert httpx.get(live_server + "/v2/models/other/ready").status_code == 404


def _infer(live_server, body: dict | bytes, headers: dict | None = None) -> httpx.Response:
    kwargs = {"json": body} if isinstance(body, dict) else {"content": body}
    return httpx.post(live_server + f"/v2/models/{MODEL}/infer", headers=headers, **kwargs)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"inputs": []},
        {"inputs": [{"name": "text", "shape": [1], "datatype": "FP32", "data": [1.0]}]},
        {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["only one"]}]},
        {"inputs": [{"name": "text", "shape": [1, 2], "datatype": "BYTES", "data": [["a", "b"]]}]},
        {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [3]}]},
        {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [""]}]},
        {
            "inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a"]}],
            "outputs": [{"name": "x"}],
        },
        {
            "inputs": [
                {"name": "text", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 9}}
            ]
        },
    ],
)
def test_v2_bad_requests_get_400(live_server, body):
    response = _infer(live_server, body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]


def test_v2_bad_binary_framing_gets_400(live_server):
    header = (
        b'{"inputs":[{"name":"text","shape":[1],"datatype":"BYTES","parameters":{"binary_data_size":8}}]}'
    )
    bad = header + b"\xff\x00\x00\x00abcd"  # element length runs past the data
    for headers in (
        {"Inference-Header-Content-Length": str(len(header))},
        {"Inference-Header-Content-Length": "x"},
    ):
        response = _infer(live_server, bad, headers)
        assert response.status_code == 400, response.text


def test_v2_unknown_model_is_404(live_server):
    body = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["hi"]}]}
    assert httpx.post(live_server + "/v2/models/nope/infer", json=body).status_code == 404
