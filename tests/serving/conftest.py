"""Serving fixtures: the app on the tiny model (in-process), and a live Uvicorn server in a thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.settings import ServeSettings


def wait_ready(get, timeout: float = 60.0):
    """Poll /ready until 200 (returns the body) or the model failed / time ran out (fails the test)."""
    deadline = time.monotonic() + timeout
    while True:
        response = get("/ready")
        body = response.json()
        if response.status_code == 200:
            return body
        if body.get("status") == "failed" or time.monotonic() > deadline:
            pytest.fail(f"server not ready: {body}")
        time.sleep(0.05)


CALIBRATION_TEXTS = [
    "i feel so happy today",
    "this makes me really angry and i do not know why",
    "i am scared of what might happen tomorrow",
    "what a surprise to see you here after all these years",
    "i miss you so much it hurts",
    "i love the way the morning light falls on the kitchen table",
    "ok",
    "i have been feeling rather anxious about the exam tomorrow and i cannot sleep at all tonight",
]


def make_settings(model_dir: Path, tmp_path: Path, **overrides) -> ServeSettings:
    """Settings for the tiny model; calibration texts let the default (static int8) backend be built."""
    calibration = tmp_path / "calibration.txt"
    calibration.write_text("\n".join(CALIBRATION_TEXTS) + "\n")
    values = {
        "model_uri": str(model_dir),
        "cache_dir": tmp_path / "cache",
        "threads": 1,
        "calibration_texts": calibration,
    } | overrides
    return ServeSettings(**values)


@pytest.fixture(scope="module")
def client(tiny_model_dir: Path, tmp_path_factory) -> Iterator[TestClient]:
    """A ready app (default settings, tiny model) behind the in-process test client."""
    app = create_app(make_settings(tiny_model_dir, tmp_path_factory.mktemp("serve")), tracking_uri="unused")
    with TestClient(app) as test_client:
        wait_ready(test_client.get)
        yield test_client


@contextmanager
def uvicorn_server(app) -> Iterator[str]:
    """`app` under a real Uvicorn server as the server runs it (the door protocol, serving.uvicorn_compat) on
    127.0.0.1 (a free port), in a background thread; yields the base URL once /ready says 200."""
    import uvicorn

    from serving.door import HTTP_PROTOCOL

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", http=HTTP_PROTOCOL)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not (server.started and server.servers):
            assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
            time.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        base_url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base_url) as http:
            wait_ready(http.get)
        yield base_url
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def live_server(tiny_model_dir: Path, tmp_path_factory) -> Iterator[str]:
    """The app on the tiny model under a real Uvicorn server (see `uvicorn_server`)."""
    settings = make_settings(tiny_model_dir, tmp_path_factory.mktemp("live"), max_texts=8, max_text_chars=200)
    with uvicorn_server(create_app(settings, tracking_uri="unused")) as base_url:
        yield base_url
