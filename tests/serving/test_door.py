"""Refusing at the door (serving.door, serving.uvicorn_compat): while a worker is full, scoring
requests are answered 503 + Retry-After by the HTTP protocol itself, without the app, and the
connection stays usable."""

from __future__ import annotations

import asyncio
import json
import select
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from serving.app import create_app
from serving.door import ARRIVED_SCOPE_KEY
from tests.serving.conftest import make_settings, uvicorn_server

V2_INFER = "/v2/models/emotion-classifier/infer"


class Spy:
    """ASGI wrapper recording the (method, path) of every HTTP request that reaches the app."""

    def __init__(self, app) -> None:
        self.app = app
        self.seen: list[tuple[str, str]] = []
        self.waited: list[float] = []  # seconds from the request's arrival stamp to the app seeing it

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            self.seen.append((scope["method"], scope["path"]))
            self.waited.append(asyncio.get_running_loop().time() - scope[ARRIVED_SCOPE_KEY])
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def door_server(tiny_model_dir, tmp_path_factory):
    app = create_app(make_settings(tiny_model_dir, tmp_path_factory.mktemp("door")), tracking_uri="unused")
    spy = Spy(app)
    with uvicorn_server(spy) as url:
        yield url, spy, app.state.runtime.batcher


@pytest.fixture
def full(door_server):
    """The worker's batcher admits nothing while the test runs."""
    url, spy, batcher = door_server
    batcher.admits = lambda *args, **kwargs: False
    spy.seen.clear()
    yield url, spy
    del batcher.admits


def raw_exchange(url: str, *chunks: bytes, pause_s: float = 0.05, read_until_close: bool = False) -> bytes:
    """Send `chunks` on one connection (pausing between them); what the server wrote back."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        for chunk in chunks:
            sock.sendall(chunk)
            time.sleep(pause_s)
        out = b""
        sock.settimeout(2 if read_until_close else 0.5)
        try:
            while data := sock.recv(65536):
                out += data
        except TimeoutError:
            assert not read_until_close, "the server kept the connection open"
        return out


def post(path: str, body: dict, *, version: bytes = b"1.1", extra: bytes = b"") -> bytes:
    data = json.dumps(body).encode()
    return (
        b"POST %s HTTP/%s\r\nhost: test\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n"
        % (path.encode(), version, len(data), extra)
    ) + data


def test_a_full_worker_refuses_every_protocol_at_the_door_without_calling_the_app(full):
    url, spy = full
    v2_body = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["i am happy"]}]}
    calls = [
        ("/predict", {"texts": ["i am happy"]}),
        ("/invocations", {"instances": ["x"]}),
        (V2_INFER, v2_body),
    ]
    before = httpx.get(url + "/metrics").text
    with httpx.Client(base_url=url) as client:
        for path, body in calls:
            response = client.post(path, json=body)
            assert response.status_code == 503 and response.headers["retry-after"] == "1"
            error = response.json()
            assert {"detail", "error", "error_code", "message"} <= error.keys()  # each protocol's field
            assert "capacity" in error["detail"] and error["error_code"] == "TEMPORARILY_UNAVAILABLE"
        assert client.get("/health").status_code == 200  # not a scoring request: served
    assert spy.seen == [("GET", "/metrics"), ("GET", "/health")]
    after = httpx.get(url + "/metrics").text

    def value(text: str, sample: str) -> float:
        line = next((ln for ln in text.splitlines() if ln.startswith(sample + " ")), f"{sample} 0")
        return float(line.split()[-1])

    shed = 'serving_shed_requests_total{reason="queue_full"}'
    assert value(after, shed) - value(before, shed) == 3
    refused_predict = 'serving_requests_total{endpoint="/predict",method="POST",status="503"}'
    assert value(after, refused_predict) - value(before, refused_predict) == 1


def test_a_refused_request_leaves_its_connection_usable_even_with_the_body_arriving_late(full):
    url, spy = full
    request = post("/predict", {"texts": ["i am happy"]})
    head, body = request.split(b"\r\n\r\n", 1)
    out = raw_exchange(url, head + b"\r\n\r\n", body, b"GET /health HTTP/1.1\r\nhost: test\r\n\r\n")
    first, second = out.split(b"HTTP/1.1 ", 2)[1:]
    assert first.startswith(b"503") and b"retry-after: 1" in first.lower()
    assert second.startswith(b"200") and b'"status":"ok"' in second
    assert spy.seen == [("GET", "/health")]


def test_http_1_0_and_connection_close_get_the_refusal_then_the_connection_closes(full):
    url, _ = full
    for request in (
        post("/predict", {"texts": ["x"]}, version=b"1.0"),
        post("/predict", {"texts": ["x"]}, extra=b"connection: close\r\n"),
    ):
        out = raw_exchange(url, request, read_until_close=True)
        assert out.startswith(b"HTTP/1.1 503") and b"connection: close" in out.lower()


def test_requests_the_door_cannot_answer_early_go_to_the_app_which_refuses_them_too(full):
    url, spy = full
    # a client waiting for 100 Continue might never send the body the parser would wait for
    out = raw_exchange(url, post("/predict", {"texts": ["x"]}, extra=b"expect: 100-continue\r\n"))
    assert b"HTTP/1.1 503" in out and b"retry-after: 1" in out.lower()
    assert spy.seen == [("POST", "/predict")]


def test_the_door_opens_again_when_the_worker_admits(door_server):
    url, spy, _ = door_server
    response = httpx.post(url + "/predict", json={"texts": ["i am so happy today"]})
    assert response.status_code == 200 and response.json()["predictions"][0]["emotion"]
    assert ("POST", "/predict") in spy.seen


def test_a_request_is_stamped_with_its_arrival_so_its_deadline_counts_from_its_first_bytes(door_server):
    """The request line arrives, then the rest 0.3 s later: the app sees it with that 0.3 s already
    counted (its deadline started when its first bytes were read, not when the app got it)."""
    url, spy, _ = door_server
    spy.waited.clear()
    request = post("/predict", {"texts": ["i am so happy today"]})
    line_end = request.index(b"\r\n") + 2
    answer = raw_exchange(url, request[:line_end], request[line_end:], pause_s=0.3)
    assert answer.startswith(b"HTTP/1.1 200")
    assert len(spy.waited) == 1 and spy.waited[0] >= 0.25


def test_a_connection_refused_again_gets_its_refusal_after_the_pause_and_is_read_at_once(full):
    """A client that resends at once after a 503 (ignoring Retry-After) gets the next 503 only after
    the pause (SERVE_REFUSED_PAUSE_MS, 1000 by default): a fresh connection's request sent after it
    is refused first. Its requests are still read at once, and one the worker takes (here a health
    check) is answered in between."""
    url, _ = full
    host, port = url.removeprefix("http://").split(":")
    with (
        socket.create_connection((host, int(port)), timeout=10) as again,
        socket.create_connection((host, int(port)), timeout=10) as fresh,
    ):
        again.sendall(post("/predict", {"texts": ["x"]}))
        assert again.recv(65536).startswith(b"HTTP/1.1 503")
        again.sendall(b"GET /health HTTP/1.1\r\nhost: test\r\n\r\n")
        assert again.recv(65536).startswith(b"HTTP/1.1 200")
        again.sendall(post("/predict", {"texts": ["x"]}))
        fresh.sendall(post("/predict", {"texts": ["x"]}))
        assert fresh.recv(65536).startswith(b"HTTP/1.1 503")
        assert select.select([again], [], [], 0)[0] == [], "refused again before the pause was over"
        assert again.recv(65536).startswith(b"HTTP/1.1 503")


@pytest.fixture
def held_server(tiny_model_dir, tmp_path):
    """A live server whose next forward pass waits until the test releases it; records what it tokenizes."""
    app = create_app(make_settings(tiny_model_dir, tmp_path, max_batch_size=1), tracking_uri="unused")
    with uvicorn_server(app) as url:
        batcher = app.state.runtime.batcher
        real_prepare, real_infer = batcher._prepare_fn, batcher._infer_fn
        tokenized: list[str] = []
        release = threading.Event()

        def recording_prepare(texts):
            tokenized.extend(texts)
            return real_prepare(texts)

        def held_infer(feeds):
            release.wait(30)
            return real_infer(feeds)

        batcher._prepare_fn, batcher._infer_fn = recording_prepare, held_infer
        yield url, tokenized, release
        release.set()


def test_a_queued_request_whose_client_disconnected_is_dropped_not_computed(held_server):
    url, tokenized, release = held_server
    host, port = url.removeprefix("http://").split(":")
    with ThreadPoolExecutor(2) as pool:
        # the first computes (held), the second waits tokenized for the inference thread
        answered = [pool.submit(httpx.post, url + "/predict", json={"texts": [t]}, timeout=30) for t in "ab"]
        deadline = time.monotonic() + 10
        while len(tokenized) < 2:
            assert time.monotonic() < deadline, tokenized
            time.sleep(0.01)
        with socket.create_connection((host, int(port)), timeout=10) as sock:  # queued behind both
            sock.sendall(post("/predict", {"texts": ["the client gives up on this one"]}))
            time.sleep(0.2)
        time.sleep(0.2)  # the server sees the connection close
        release.set()
        assert [f.result().status_code for f in answered] == [200, 200]
    assert httpx.post(url + "/predict", json={"texts": ["c"]}, timeout=30).status_code == 200
    assert sorted(tokenized) == ["a", "b", "c"]  # never the abandoned text
    metrics = httpx.get(url + "/metrics").text
    assert 'serving_requests_total{endpoint="/predict",method="POST",status="499"} 1.0' in metrics
