"""A loopback server speaking the part of the Hugging Face Hub's file API that `hf_hub_download` uses.

`HEAD|GET /datasets/{repo}/resolve/{revision}/{path}` answers like the Hub does for an LFS file:
`ETag` (the file's sha256, quoted), `X-Repo-Commit` (the full commit the revision resolves to),
`Content-Length`, `Accept-Ranges`; an unknown revision gets 404 with `X-Error-Code:
RevisionNotFound`, an unknown file 404 with `X-Error-Code: EntryNotFound`. Every request is logged,
so a test can tell whether the Hub was asked at all. Point `HF_ENDPOINT` at `url`.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit


@dataclass
class FakeHub:
    repo: str  # e.g. "dair-ai/emotion"
    commit: str  # 40 hex digits
    files: dict[str, bytes]  # path in the repository -> content
    aliases: tuple[str, ...] = ("main",)  # branch names that resolve to `commit`
    requests: list[tuple[str, str]] = field(default_factory=list)
    url: str = ""
    _server: ThreadingHTTPServer | None = None

    def start(self) -> FakeHub:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _answer(self, body: bool) -> None:
                hub.requests.append((self.command, self.path))
                prefix = f"/datasets/{hub.repo}/resolve/"
                path = unquote(urlsplit(self.path).path)
                if not path.startswith(prefix):
                    return self._error(404, "RepoNotFound", "Repository not found")
                revision, _, name = path[len(prefix) :].partition("/")
                if revision != hub.commit and revision not in hub.aliases:
                    return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
                if name not in hub.files:
                    return self._error(404, "EntryNotFound", f"{name} does not exist", commit=True)
                data = hub.files[name]
                self.send_response(200)
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("X-Repo-Commit", hub.commit)
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def _error(self, status: int, code: str, message: str, commit: bool = False) -> None:
                payload = f'{{"error": "{message}"}}'.encode()
                self.send_response(status)
                self.send_header("X-Error-Code", code)
                self.send_header("X-Error-Message", message)
                if commit:
                    self.send_header("X-Repo-Commit", hub.commit)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            def do_HEAD(self) -> None:  # noqa: N802 - the http.server API
                self._answer(body=False)

            def do_GET(self) -> None:  # noqa: N802
                self._answer(body=True)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
