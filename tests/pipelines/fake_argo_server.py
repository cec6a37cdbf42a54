"""A small Argo server on 127.0.0.1 for contract tests of pipelines/submit.py.

It implements only the endpoints submit.py uses, routes every request through Argo's saved
swagger (an unknown method+path is a contract violation), checks each request body against the
swagger definition of that operation (strict: unknown fields rejected) and the bearer token, and
answers the way the real server does (JSON bodies with `code`/`message` on errors, generated
names, a workflow that moves through its phases as it is polled).
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pipelines.argo_schema import swagger, swagger_validator

GRPC_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 409: 6, 500: 13}


def _operations() -> list[tuple[str, re.Pattern[str], dict[str, Any]]]:
    ops = []
    for path, item in swagger()["paths"].items():
        pattern = re.compile("^" + re.sub(r"\{[^/]+\}", "[^/]+", path) + "$")
        for method, op in item.items():
            if method != "parameters":
                ops.append((method.upper(), pattern, op, path.count("{")))
    # prefer literal segments (".../lint") over placeholders ("{name}")
    return [(m, p, op) for m, p, op, _ in sorted(ops, key=lambda o: o[3])]


@dataclass
class FakeArgo:
    """State and knobs of the fake server; tests read `requests` and `violations` afterwards."""

    token: str = "s3cr3t-token"
    forbidden: bool = False
    phases: list[str] = field(default_factory=lambda: ["Pending", "Running", "Succeeded"])
    templates: dict[str, dict] = field(default_factory=dict)
    workflows: dict[str, dict] = field(default_factory=dict)
    requests: list[tuple[str, str, dict | None]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    polls: dict[str, int] = field(default_factory=dict)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _ops: list = field(default_factory=_operations)

    def operation(self, method: str, path: str) -> dict | None:
        return next((op for m, p, op in self._ops if m == method and p.match(path)), None)

    def body_errors(self, op: dict, body: Any) -> list[str]:
        params = [p for p in op.get("parameters", []) if p.get("in") == "body"]
        if not params:
            return [] if body is None else [f"{op['operationId']} takes no body"]
        definition = params[0]["schema"]["$ref"].rsplit("/", 1)[1]
        errors = swagger_validator(definition).iter_errors(body)
        return [f"{op['operationId']}: {'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]

    def new_workflow(self, ns: str, wf: dict) -> dict:
        wf = json.loads(json.dumps(wf))
        meta = wf.setdefault("metadata", {})
        n = next(self._ids)
        meta["name"] = meta.get("name") or f"{meta.get('generateName', 'wf-')}{n:05d}"
        meta.update(namespace=ns, uid=f"uid-{n}", creationTimestamp=f"2026-11-26T10:{n:02d}:00Z")
        meta.pop("generateName", None)
        wf.pop("status", None)
        self.workflows[meta["name"]] = wf
        return wf

    def advance(self, name: str) -> dict:
        """Each GET moves the workflow one phase further (the last phase sticks)."""
        wf = self.workflows[name]
        i = self.polls[name] = self.polls.get(name, -1) + 1
        phase = self.phases[min(i, len(self.phases) - 1)]
        if phase == "Pending":
            wf.pop("status", None)  # the controller has not touched it yet
            return wf
        done = phase in ("Succeeded", "Failed", "Error")
        nodes = {
            f"{name}-1": {
                "id": f"{name}-1",
                "name": f"{name}.dvc-fetch",
                "displayName": "dvc-fetch",
                "type": "Pod",
                "phase": "Succeeded",
                "startedAt": "2026-11-26T10:00:01Z",
                "finishedAt": "2026-11-26T10:00:09Z",
            },
            f"{name}-2": {
                "id": f"{name}-2",
                "name": f"{name}.hpo",
                "displayName": "hpo",
                "type": "Pod",
                "phase": phase if done else "Running",
                "startedAt": "2026-11-26T10:00:10Z",
            },
        }
        wf["status"] = {
            "phase": phase,
            "startedAt": "2026-11-26T10:00:00Z",
            "nodes": nodes,
            "progress": "1/2" if not done else "2/2",
        }
        if done:
            wf["status"]["finishedAt"] = "2026-11-26T10:09:00Z"
        if phase in ("Failed", "Error"):
            wf["status"]["message"] = "child 'hpo' failed"
        return wf

    def handle(self, method: str, path: str, headers, body: Any) -> tuple[int, Any]:
        self.requests.append((method, path, body))
        op = self.operation(method, path)
        if op is None:
            self.violations.append(f"{method} {path} is not an Argo API operation")
            return 404, {"code": 5, "message": "Not Found"}
        if headers.get("Authorization") != f"Bearer {self.token}":
            return 401, {"code": 16, "message": "token not valid"}
        if self.forbidden:
            return 403, {"code": 7, "message": 'workflows.argoproj.io is forbidden: User "system:anonymous"'}
        errors = self.body_errors(op, body)
        if errors:
            self.violations.extend(errors)
            return 400, {"code": 3, "message": "; ".join(errors)}
        parts = path.split("/")[3:]  # after /api/v1/
        kind, ns, rest = parts[0], parts[1], parts[2:]
        if kind == "workflow-templates":
            return self._templates(method, ns, rest, body)
        return self._workflows(method, ns, rest, body)

    def _templates(self, method, ns, rest, body):
        if method == "GET":
            tmpl = self.templates.get(rest[0])
            return (
                (200, tmpl)
                if tmpl
                else (404, {"code": 5, "message": f'workflowtemplates.argoproj.io "{rest[0]}" not found'})
            )
        tmpl = body["template"]
        name = tmpl["metadata"]["name"]
        if method == "POST":
            if name in self.templates:
                return 409, {"code": 6, "message": f'workflowtemplates.argoproj.io "{name}" already exists'}
            tmpl["metadata"]["resourceVersion"] = "1"
        else:  # PUT
            current = self.templates.get(rest[0])
            if current is None:
                return 404, {"code": 5, "message": "not found"}
            if tmpl["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
                return 409, {"code": 6, "message": "the object has been modified"}
            tmpl["metadata"]["resourceVersion"] = str(int(current["metadata"]["resourceVersion"]) + 1)
        tmpl["metadata"]["namespace"] = ns
        self.templates[name] = tmpl
        return 200, tmpl

    def _workflows(self, method, ns, rest, body):
        if method == "POST":
            wf = body["workflow"]
            ref = wf.get("spec", {}).get("workflowTemplateRef")
            if ref and ref["name"] not in self.templates:
                return 404, {"code": 5, "message": f'workflowtemplates.argoproj.io "{ref["name"]}" not found'}
            if wf.get("metadata", {}).get("name") in self.workflows:
                return 409, {"code": 6, "message": "workflows.argoproj.io already exists"}
            return 200, self.new_workflow(ns, wf)
        if method == "GET" and not rest:
            return 200, {"metadata": {}, "items": list(self.workflows.values())}
        name = rest[0]
        if name not in self.workflows:
            return 404, {"code": 5, "message": f'workflows.argoproj.io "{name}" not found'}
        if method == "GET":
            return 200, self.advance(name)
        # PUT .../resubmit
        old = self.workflows[name]
        if body.get("memoized") and (old.get("status") or {}).get("phase") not in ("Failed", "Error"):
            return 400, {"code": 3, "message": "workflow must be Failed/Error to resubmit in memoized mode"}
        new = json.loads(json.dumps(old))
        new["metadata"] = {
            "generateName": f"{name}-",
            "labels": {
                **old["metadata"].get("labels", {}),
                "workflows.argoproj.io/resubmitted-from-workflow": name,
            },
        }
        overrides = dict(p.split("=", 1) for p in body.get("parameters", []))
        for p in new["spec"].get("arguments", {}).get("parameters", []):
            p["value"] = overrides.get(p["name"], p.get("value"))
        return 200, self.new_workflow(ns, new)


class _Handler(BaseHTTPRequestHandler):
    fake: FakeArgo

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            self.fake.violations.append(f"{method} {self.path}: body is not JSON")
            body = None
        path = self.path.split("?", 1)[0]
        status, payload = self.fake.handle(method, path, self.headers, body)
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802
        self._serve("GET")

    def do_POST(self):  # noqa: N802
        self._serve("POST")

    def do_PUT(self):  # noqa: N802
        self._serve("PUT")

    def do_DELETE(self):  # noqa: N802
        self._serve("DELETE")


class RunningServer:
    def __init__(self, fake: FakeArgo) -> None:
        handler = type("Handler", (_Handler,), {"fake": fake})
        self.fake = fake
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> RunningServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
