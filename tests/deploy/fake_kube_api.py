"""FAKE Kubernetes API server (HTTP level) for the deploy step's tests. Not a real cluster.

It implements only what `steps.deploy.k8s_apply` calls, with just enough controller behaviour
to exercise apply / wait / rollback:
- PATCH deployments and services with `application/apply-patch+yaml` (server-side apply:
  requires fieldManager; the applied spec replaces the stored one) and deployments with
  `application/json-patch+json` (`replace /spec/template`, as `kubectl rollout undo`);
- GET a deployment; GET replicasets filtered by `labelSelector`;
- PATCH (apply) and GET a KubeRay RayService (`ray.io/v1`), with a fake KubeRay: a changed
  `serveConfigV2` is rolled out in place (the app DEPLOYING, then RUNNING; a model whose version
  is in `broken_versions` ends DEPLOY_FAILED while the old replicas keep serving), a changed
  `rayClusterConfig` brings up a pending cluster (`UpgradeInProgress`) that takes the traffic
  once its app runs, or never for a broken model. `served_model[(ns, name)]` is what answers.
Like the real Deployment controller, a changed pod template bumps `metadata.generation` and gets
a ReplicaSet with the next `deployment.kubernetes.io/revision` (an old template's ReplicaSet is
reused and renumbered, as on rollback). Each GET of the deployment is one controller "tick":
pods of a healthy template become available after `ticks_to_ready` ticks; pods whose
`emotion-hpo.io/model-version` annotation is in `broken_versions` never become ready, so the
old ReplicaSet keeps serving (maxUnavailable 0).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import yaml

REVISION = "deployment.kubernetes.io/revision"
VERSION_ANNOTATION = "emotion-hpo.io/model-version"


class FakeKubeApi:
    def __init__(self, ticks_to_ready: int = 2, broken_versions: set[str] | None = None) -> None:
        self.ticks_to_ready = ticks_to_ready
        self.broken_versions = set(broken_versions or ())
        self.deployments: dict[tuple[str, str], dict] = {}
        self.services: dict[tuple[str, str], dict] = {}
        self.replica_sets: list[dict] = []
        self.requests: list[dict] = []
        self.serving_rs: dict[tuple[str, str], str] = {}  # deployment -> name of the RS fully available
        self._progress: dict[str, int] = {}
        self.rayservices: dict[tuple[str, str], dict] = {}
        self.served_model: dict[tuple[str, str], str] = {}  # RayService -> model_uri that answers
        self._ray_state: dict[tuple[str, str], dict] = {}
        self._uids = (f"uid-{i}" for i in itertools.count(1))
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeKubeApi:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    # ---- the fake controller -------------------------------------------------------------
    def _template_rs(self, dep: dict) -> dict:
        """Find or create the ReplicaSet for the deployment's current template; bump the revision."""
        template = dep["spec"]["template"]
        pod_hash = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]
        ns, uid = dep["metadata"]["namespace"], dep["metadata"]["uid"]
        owned = [rs for rs in self.replica_sets if rs["metadata"]["ownerReferences"][0]["uid"] == uid]
        top = max((int(rs["metadata"]["annotations"][REVISION]) for rs in owned), default=0)
        rs = next((r for r in owned if r["metadata"]["labels"]["pod-template-hash"] == pod_hash), None)
        if rs is None:
            rs_template = copy.deepcopy(template)
            rs_template["metadata"].setdefault("labels", {})["pod-template-hash"] = pod_hash
            rs = {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {
                    "name": f"{dep['metadata']['name']}-{pod_hash}",
                    "namespace": ns,
                    "labels": {**template["metadata"]["labels"], "pod-template-hash": pod_hash},
                    "annotations": {REVISION: str(top + 1)},
                    "ownerReferences": [
                        {
                            "apiVersion": "apps/v1",
                            "kind": "Deployment",
                            "uid": uid,
                            "name": dep["metadata"]["name"],
                            "controller": True,
                        }
                    ],
                },
                "spec": {"replicas": 0, "template": rs_template},
            }
            self.replica_sets.append(rs)
        elif int(rs["metadata"]["annotations"][REVISION]) != top:
            rs["metadata"]["annotations"][REVISION] = str(top + 1)
        dep["metadata"].setdefault("annotations", {})[REVISION] = rs["metadata"]["annotations"][REVISION]
        return rs

    def _tick(self, dep: dict) -> None:
        key = (dep["metadata"]["namespace"], dep["metadata"]["name"])
        rs = self._template_rs(dep)
        name = rs["metadata"]["name"]
        want = dep["spec"].get("replicas", 1)
        version = dep["spec"]["template"]["metadata"].get("annotations", {}).get(VERSION_ANNOTATION)
        if self.serving_rs.get(key) != name and version not in self.broken_versions:
            self._progress[name] = self._progress.get(name, 0) + 1
            if self._progress[name] >= self.ticks_to_ready:
                self.serving_rs[key] = name
        old_serving = key in self.serving_rs and self.serving_rs[key] != name
        if self.serving_rs.get(key) == name:
            status = {
                "replicas": want,
                "updatedReplicas": want,
                "readyReplicas": want,
                "availableReplicas": want,
            }
        else:  # one surge pod of the new template, not ready; old pods keep serving
            status = {
                "replicas": want + 1 if old_serving else 1,
                "updatedReplicas": 1,
                "availableReplicas": want if old_serving else 0,
            }
        for r in self.replica_sets:
            r["spec"]["replicas"] = want if r["metadata"]["name"] == self.serving_rs.get(key) else 0
        status["observedGeneration"] = dep["metadata"]["generation"]
        dep["status"] = status

    # ---- the fake KubeRay ----------------------------------------------------------------------
    @staticmethod
    def _model_uri(rayservice: dict) -> str:
        return yaml.safe_load(rayservice["spec"]["serveConfigV2"])["applications"][0]["args"]["model_uri"]

    def _ray_tick(self, key: tuple[str, str], rayservice: dict) -> None:
        state = self._ray_state[key]
        model_uri = self._model_uri(rayservice)
        broken = model_uri.rsplit("/", 1)[-1] in self.broken_versions
        state["ticks"] += 1
        settled = state["ticks"] >= self.ticks_to_ready
        app = {"status": "RUNNING"}
        pending = None
        if state["new_cluster"] and key in self.served_model:  # a NewCluster upgrade
            pending_app = {"status": "DEPLOYING"}
            if settled and not broken:
                state["new_cluster"] = False
                state["cluster"] += 1
                self.served_model[key] = model_uri
            else:
                pending = {"rayClusterName": f"{key[1]}-{state['cluster'] + 1}", "applicationStatuses": {
                    "emotion-classifier": pending_app}}  # fmt: skip
        elif settled:
            if broken:
                app = {"status": "DEPLOY_FAILED", "message": "replica failed to start: model failed to load"}
            else:
                self.served_model[key] = model_uri
        else:
            app = {"status": "DEPLOYING"}
        ready = key in self.served_model
        rayservice["status"] = {
            "observedGeneration": rayservice["metadata"]["generation"],
            "conditions": [
                {"type": "Ready", "status": "True" if ready else "False"},
                {"type": "UpgradeInProgress", "status": "True" if pending else "False"},
            ],
            "activeServiceStatus": {
                "rayClusterName": f"{key[1]}-{state['cluster']}",
                "applicationStatuses": {"emotion-classifier": app},
            },
        }
        if pending:
            rayservice["status"]["pendingServiceStatus"] = pending

    def apply_rayservice(self, ns: str, name: str, body: dict) -> dict:
        key = (ns, name)
        existing = self.rayservices.get(key)
        if existing is None:
            obj = copy.deepcopy(body)
            obj["metadata"].update(uid=next(self._uids), generation=1)
            obj["status"] = {}
            self.rayservices[key] = obj
            self._ray_state[key] = {"ticks": 0, "cluster": 1, "new_cluster": False}
            return obj
        if body["spec"] != existing["spec"]:
            new_cluster = body["spec"]["rayClusterConfig"] != existing["spec"]["rayClusterConfig"]
            existing["spec"] = copy.deepcopy(body["spec"])
            existing["metadata"]["generation"] += 1
            self._ray_state[key].update(ticks=0, new_cluster=new_cluster)
        return existing

    # ---- API operations --------------------------------------------------------------------
    def apply_deployment(self, ns: str, name: str, body: dict) -> dict:
        existing = self.deployments.get((ns, name))
        if existing is None:
            dep = copy.deepcopy(body)
            dep["metadata"].update(uid=next(self._uids), generation=1)
            dep["status"] = {}
            self.deployments[(ns, name)] = dep
        else:
            dep = existing
            if body["spec"] != dep["spec"]:
                dep["spec"] = copy.deepcopy(body["spec"])
                dep["metadata"]["generation"] += 1
            annotations = {**body["metadata"].get("annotations", {})}
            annotations[REVISION] = dep["metadata"].get("annotations", {}).get(REVISION, "0")
            dep["metadata"]["annotations"] = annotations
        self._template_rs(dep)
        return dep

    def json_patch_deployment(self, ns: str, name: str, ops: list[dict]) -> dict:
        dep = self.deployments[(ns, name)]
        for op in ops:
            assert op["op"] == "replace" and op["path"] == "/spec/template", f"unsupported patch {op}"
            dep["spec"]["template"] = copy.deepcopy(op["value"])
        dep["metadata"]["generation"] += 1
        self._template_rs(dep)
        return dep

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _reply(self, code: int, obj: dict) -> None:
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _not_found(self, what: str) -> None:
                self._reply(
                    404,
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "status": "Failure",
                        "message": f"{what} not found",
                        "reason": "NotFound",
                        "code": 404,
                    },
                )

            def _record(self) -> tuple[list[str], dict]:
                parsed = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
                fake.requests.append(
                    {
                        "method": self.command,
                        "path": parsed.path,
                        "query": query,
                        "content_type": self.headers.get("Content-Type"),
                    }
                )
                return parsed.path.strip("/").split("/"), query

            def do_GET(self) -> None:
                parts, query = self._record()
                with fake._lock:
                    if parts[:3] == ["apis", "ray.io", "v1"] and parts[5:6] == ["rayservices"]:
                        obj = fake.rayservices.get((parts[4], parts[6]))
                        if obj is None:
                            return self._not_found(f"rayservice {parts[6]}")
                        fake._ray_tick((parts[4], parts[6]), obj)
                        return self._reply(200, obj)
                    if parts[:3] == ["apis", "apps", "v1"] and parts[5:6] == ["deployments"]:
                        dep = fake.deployments.get((parts[4], parts[6]))
                        if dep is None:
                            return self._not_found(f"deployment {parts[6]}")
                        fake._tick(dep)
                        return self._reply(200, dep)
                    if parts[:3] == ["apis", "apps", "v1"] and parts[5:6] == ["replicasets"]:
                        wanted = dict(kv.split("=") for kv in query.get("labelSelector", "").split(",") if kv)
                        items = [
                            rs
                            for rs in fake.replica_sets
                            if rs["metadata"]["namespace"] == parts[4]
                            and all(rs["metadata"]["labels"].get(k) == v for k, v in wanted.items())
                        ]
                        return self._reply(
                            200,
                            {
                                "kind": "ReplicaSetList",
                                "apiVersion": "apps/v1",
                                "metadata": {},
                                "items": items,
                            },
                        )
                self._not_found(self.path)

            def do_PATCH(self) -> None:
                parts, query = self._record()
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                content_type = self.headers.get("Content-Type", "")
                with fake._lock:
                    if content_type == "application/apply-patch+yaml":
                        if not query.get("fieldManager"):
                            return self._reply(422, {"kind": "Status", "message": "fieldManager is required"})
                        body = yaml.safe_load(raw)
                        if parts[:3] == ["apis", "ray.io", "v1"] and parts[5:6] == ["rayservices"]:
                            return self._reply(200, fake.apply_rayservice(parts[4], parts[6], body))
                        if parts[5:6] == ["deployments"]:
                            return self._reply(200, fake.apply_deployment(parts[4], parts[6], body))
                        if parts[:2] == ["api", "v1"] and parts[4:5] == ["services"]:
                            fake.services[(parts[3], parts[5])] = body
                            return self._reply(200, body)
                    if content_type == "application/json-patch+json" and parts[5:6] == ["deployments"]:
                        if (parts[4], parts[6]) not in fake.deployments:
                            return self._not_found(f"deployment {parts[6]}")
                        return self._reply(
                            200, fake.json_patch_deployment(parts[4], parts[6], json.loads(raw))
                        )
                self._reply(
                    415, {"kind": "Status", "message": f"fake does not handle {content_type} {self.path}"}
                )

        return Handler
