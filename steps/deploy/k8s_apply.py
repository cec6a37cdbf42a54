"""Server-side apply, rollout wait and rollback for the serving Deployment (Kubernetes Python client).

- apply: `PATCH` with `application/apply-patch+yaml`, our field manager and `force=true`
  (we own these objects; a stray `kubectl edit` must not block a deploy).
- wait: the same test as `kubectl rollout status`: the controller has seen the newest spec
  (observedGeneration), every replica runs the new template (updatedReplicas), no old replica is
  left (replicas), and all are available (availableReplicas); a `ProgressDeadlineExceeded`
  condition or our own timeout is a failure.
- rollback: what `kubectl rollout undo` does: find the ReplicaSet of the previous revision
  (`deployment.kubernetes.io/revision`) among those the Deployment owns and put its pod
  template back (a JSON patch of `/spec/template`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client

from steps.deploy.k8s_render import FIELD_MANAGER

log = logging.getLogger(__name__)

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"


class RolloutFailed(RuntimeError):
    pass


def _body(response: Any) -> dict:
    return json.loads(response.data)


def apply_manifest(api: client.ApiClient, manifest: dict) -> dict:
    """Server-side apply one Service or Deployment; return the object the API server now holds."""
    kind, meta = manifest["kind"], manifest["metadata"]
    kwargs = dict(
        name=meta["name"],
        namespace=meta["namespace"],
        body=manifest,
        field_manager=FIELD_MANAGER,
        force=True,
        _content_type=APPLY_CONTENT_TYPE,
        _preload_content=False,
    )
    if kind == "Deployment":
        return _body(client.AppsV1Api(api).patch_namespaced_deployment(**kwargs))
    if kind == "Service":
        return _body(client.CoreV1Api(api).patch_namespaced_service(**kwargs))
    raise ValueError(f"cannot apply kind {kind!r}")


def read_deployment(api: client.ApiClient, name: str, namespace: str) -> dict:
    return _body(client.AppsV1Api(api).read_namespaced_deployment(name, namespace, _preload_content=False))


def rollout_progress(deployment: dict) -> tuple[bool, str]:
    """(done, what we wait for); raises RolloutFailed when the controller gave up."""
    meta, spec, status = deployment["metadata"], deployment.get("spec", {}), deployment.get("status", {})
    if status.get("observedGeneration", 0) < meta.get("generation", 0):
        return False, "waiting for the controller to observe the new spec"
    for condition in status.get("conditions", []):
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            raise RolloutFailed(f"progress deadline exceeded: {condition.get('message', '')}")
    want = spec.get("replicas", 1)
    updated = status.get("updatedReplicas", 0)
    if updated < want:
        return False, f"{updated} of {want} replicas updated"
    if status.get("replicas", 0) > updated:
        return False, f"{status.get('replicas', 0) - updated} old replicas pending termination"
    available = status.get("availableReplicas", 0)
    if available < updated:
        return False, f"{available} of {updated} updated replicas available"
    return True, f"{available} replicas available"


def poll_until(
    read: Callable[[], dict],
    progress: Callable[[dict], tuple[bool, str]],
    what: str,
    timeout_s: float,
    poll_s: float = 2.0,
) -> dict:
    """Read the object until `progress` says done; RolloutFailed after `timeout_s` (or from progress)."""
    deadline = time.monotonic() + timeout_s
    while True:
        obj = read()
        done, message = progress(obj)
        if done:
            return obj
        if time.monotonic() >= deadline:
            raise RolloutFailed(f"{what} not complete after {timeout_s:g}s: {message}")
        log.info("%s: %s", what, message)
        time.sleep(poll_s)


def wait_for_rollout(
    api: client.ApiClient, name: str, namespace: str, timeout_s: float, poll_s: float = 2.0
) -> dict:
    """Poll the Deployment until its rollout is complete; raise RolloutFailed on timeout or deadline."""
    return poll_until(
        lambda: read_deployment(api, name, namespace),
        rollout_progress,
        f"rollout of {namespace}/{name}",
        timeout_s,
        poll_s,
    )


def _revision(obj: dict) -> int:
    try:
        return int(obj["metadata"].get("annotations", {}).get(REVISION_ANNOTATION, "0"))
    except ValueError:
        return 0


def previous_template(api: client.ApiClient, deployment: dict) -> tuple[int, dict] | None:
    """The revision number and pod template of the ReplicaSet before the current one, if any."""
    meta = deployment["metadata"]
    selector = ",".join(f"{k}={v}" for k, v in deployment["spec"]["selector"]["matchLabels"].items())
    replica_sets = _body(
        client.AppsV1Api(api).list_namespaced_replica_set(
            meta["namespace"], label_selector=selector, _preload_content=False
        )
    )["items"]
    owned = [
        rs
        for rs in replica_sets
        if any(ref.get("uid") == meta["uid"] for ref in rs["metadata"].get("ownerReferences", []))
    ]
    current = _revision(deployment)
    older = [rs for rs in owned if 0 < _revision(rs) < current]
    if not older:
        return None
    previous = max(older, key=_revision)
    template = json.loads(json.dumps(previous["spec"]["template"]))
    template.get("metadata", {}).get("labels", {}).pop("pod-template-hash", None)
    return _revision(previous), template


def rollback(api: client.ApiClient, deployment: dict) -> int | None:
    """Put the previous revision's pod template back; return that revision (None: nothing to go back to)."""
    found = previous_template(api, deployment)
    if found is None:
        return None
    revision, template = found
    meta = deployment["metadata"]
    client.AppsV1Api(api).patch_namespaced_deployment(
        meta["name"],
        meta["namespace"],
        body=[{"op": "replace", "path": "/spec/template", "value": template}],
        field_manager=f"{FIELD_MANAGER}-rollback",
        _preload_content=False,
    )
    log.warning("rolled %s/%s back to revision %s", meta["namespace"], meta["name"], revision)
    return revision
