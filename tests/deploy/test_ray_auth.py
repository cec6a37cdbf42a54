"""The ray-serve target against a Ray dashboard with token authentication (RAY_AUTH_MODE=token).

A FAKE dashboard (an HTTP server answering like Ray's token middleware: 401 without a token, 403
with a wrong one) checks that the step finds the token where Ray's own clients look and that a
refusal names the fix. Not a Ray cluster: the real dashboard is exercised in test_ray_serve.py.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from shared.errors import StepError
from steps.deploy.ray_serve import API_PATH, read_instance

TOKEN = "s3cr3t-cluster-token"
EMPTY_INSTANCE = {"applications": {}, "proxies": {}, "controller_info": {}}


@pytest.fixture
def dashboard() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            header = self.headers.get("Authorization", "")
            if not header:
                code, body = 401, b"Unauthorized: Missing authentication token"
            elif header != f"Bearer {TOKEN}":
                code, body = 403, b"Forbidden: Invalid authentication token"
            else:
                code, body = 200, json.dumps(EMPTY_INSTANCE).encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{API_PATH}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def no_token(monkeypatch, tmp_path):
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.ray/auth_token


def test_the_token_is_found_where_ray_looks(dashboard, monkeypatch, tmp_path):
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text(TOKEN + "\n")  # `ray get-auth-token --generate`
    assert read_instance(dashboard).applications == {}
    token_file = tmp_path / "token"
    token_file.write_text("wrong")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token_file))  # wins over the default file
    with pytest.raises(StepError, match="HTTP 403"):
        read_instance(dashboard)
    monkeypatch.setenv("RAY_AUTH_TOKEN", TOKEN)  # wins over both
    assert read_instance(dashboard).applications == {}


def test_a_refusal_names_the_fix_and_never_the_token(dashboard, monkeypatch):
    with pytest.raises(StepError) as info:
        read_instance(dashboard)
    assert "HTTP 401" in str(info.value) and "RAY_AUTH_TOKEN" in str(info.value)
    monkeypatch.setenv("RAY_AUTH_TOKEN", "not-" + TOKEN)
    with pytest.raises(StepError) as info:
        read_instance(dashboard)
    assert "HTTP 403" in str(info.value) and TOKEN not in str(info.value)


def test_a_token_path_that_is_not_a_file_is_bad_input(dashboard, monkeypatch, tmp_path):
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "missing"))
    with pytest.raises(StepError, match="RAY_AUTH_TOKEN_PATH=.*not a readable file"):
        read_instance(dashboard)
