"""RayService target: apply the KubeRay RayService (`rayservice_render`), wait for it to serve, or undo.

- apply: server-side apply of the rendered RayService (`ray.io/v1`, our field manager, force).
- wait: KubeRay has reconciled the new spec (`status.observedGeneration`), no upgrade is in
  progress (condition `UpgradeInProgress` false: a pending RayCluster of a NewCluster upgrade has
  taken the traffic), the RayService is `Ready`, and this application runs on the active cluster.
  A model change alone is rolled out by Ray Serve in place (surged, see `serving.ray_app`); an
  image or cluster change brings up a new RayCluster while the old one serves.
- failure: the application reports DEPLOY_FAILED / UNHEALTHY, or the wait times out. The spec
  read before the apply is applied again, which cancels a pending cluster or resubmits the old
  Serve config (its replicas still run), and the step fails with exit 2 naming what serves.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import yaml
from kubernetes import client

from serving.ray_app import APP_NAME
from serving.settings import ServeSettings
from shared.errors import StepError, TransientError
from shared.failures import TRANSIENT_HTTP_STATUS
from shared.progress import NO_PROGRESS, Progress
from shared.settings import Settings
from steps.deploy.contract import DeployInput, DeployResult, Target
from steps.deploy.k8s_apply import APPLY_CONTENT_TYPE, RolloutFailed, poll_until
from steps.deploy.k8s_deploy import resolve_model_version
from steps.deploy.k8s_render import FIELD_MANAGER
from steps.deploy.rayservice_render import OWN_ARGS, SERVE_PORT, RayServiceSpec, render_rayservice

log = logging.getLogger(__name__)

GROUP, VERSION, PLURAL = "ray.io", "v1", "rayservices"
FAILED_APP_STATES = ("DEPLOY_FAILED", "UNHEALTHY")


def _objects(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


def read_rayservice(api: client.ApiClient, name: str, namespace: str) -> dict | None:
    """The RayService as the API server holds it, or None if there is none."""
    from kubernetes.client.exceptions import ApiException

    try:
        response = _objects(api).get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, _preload_content=False
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return json.loads(response.data)


def apply_rayservice(api: client.ApiClient, manifest: dict) -> dict:
    meta = manifest["metadata"]
    response = _objects(api).patch_namespaced_custom_object(
        GROUP,
        VERSION,
        meta["namespace"],
        PLURAL,
        meta["name"],
        manifest,
        field_manager=FIELD_MANAGER,
        force=True,
        _content_type=APPLY_CONTENT_TYPE,
        _preload_content=False,
    )
    return json.loads(response.data)


def _condition(status: dict, kind: str) -> bool | None:
    for condition in status.get("conditions", []):
        if condition.get("type") == kind:
            return condition.get("status") == "True"
    return None


def serving_progress(rayservice: dict, app: str = APP_NAME) -> tuple[bool, str]:
    """(done, what we wait for); raises RolloutFailed when the application failed to deploy."""
    meta, status = rayservice["metadata"], rayservice.get("status") or {}
    if status.get("observedGeneration", 0) < meta.get("generation", 0):
        return False, "waiting for KubeRay to observe the new spec"
    for side in ("pendingServiceStatus", "activeServiceStatus"):
        app_status = (status.get(side) or {}).get("applicationStatuses", {}).get(app, {})
        if app_status.get("status") in FAILED_APP_STATES:
            where = "the new RayCluster" if side == "pendingServiceStatus" else "the cluster"
            raise RolloutFailed(
                f"application {app} is {app_status['status']} on {where}: {app_status.get('message', '')}"
            )
    if _condition(status, "UpgradeInProgress"):
        return False, "a new RayCluster is coming up; the old one serves"
    if not _condition(status, "Ready"):
        return False, "the RayService is not Ready yet"
    active = (status.get("activeServiceStatus") or {}).get("applicationStatuses", {}).get(app, {})
    if active.get("status") != "RUNNING":
        return False, f"application {app} is {active.get('status', 'not deployed')}"
    return True, f"application {app} is RUNNING on {status['activeServiceStatus'].get('rayClusterName', '?')}"


def wait_serving(
    api: client.ApiClient, name: str, namespace: str, timeout_s: float, poll_s: float = 2.0
) -> dict:
    """Poll the RayService until it serves the applied spec; RolloutFailed on a failure or timeout."""

    def read() -> dict:
        rayservice = read_rayservice(api, name, namespace)
        if rayservice is None:
            raise RolloutFailed(f"RayService {namespace}/{name} disappeared")
        return rayservice

    return poll_until(read, serving_progress, f"RayService {namespace}/{name}", timeout_s, poll_s)


def reapplicable(rayservice: dict) -> dict[str, Any]:
    """What to apply to put a RayService back as it was: its spec and our labels, nothing server-made."""
    meta = rayservice["metadata"]
    return {
        "apiVersion": rayservice["apiVersion"],
        "kind": rayservice["kind"],
        "metadata": {"name": meta["name"], "namespace": meta["namespace"], "labels": meta.get("labels", {})},
        "spec": rayservice["spec"],
    }


def rayservice_spec(inp: DeployInput, model_uri: str) -> RayServiceSpec:
    """The RayService for this deploy: its name, namespace, image and replicas; SERVE_* as app args."""
    from steps.deploy.ray_serve import serve_args

    given = serve_args(model_uri, inp.serve_env)
    bounds = ServeSettings(**given)  # the replica bounds and CPUs, validated as the app builder will
    args = {k: v for k, v in given.items() if k not in OWN_ARGS}
    return RayServiceSpec(
        name=inp.name,
        namespace=inp.deploy_namespace,
        image=inp.ray_image or "",
        model_uri=model_uri,
        min_replicas=inp.replicas,
        max_replicas=max(inp.replicas, bounds.max_replicas or inp.replicas),
        cpus_per_replica=bounds.cpus_per_replica,
        serve_args=args,
    )


def rollout_rayservice(
    inp: DeployInput,
    settings: Settings,
    api: client.ApiClient,
    *,
    poll_s: float = 2.0,
    progress: Progress = NO_PROGRESS,
) -> DeployResult:
    """Apply the RayService serving `inp.model_uri`; wait until it serves; on failure put back the old one."""
    from kubernetes.client.exceptions import ApiException

    if not inp.ray_image:
        raise StepError(
            "--ray-image is required for --deploy-target rayservice (an image with Ray Serve and "
            "serving/: the train image)"
        )
    model_uri, version = resolve_model_version(inp.model_uri, settings.mlflow_tracking_uri)
    try:
        spec = rayservice_spec(inp, model_uri)
    except ValueError as exc:
        raise StepError(f"cannot serve {model_uri} as a RayService: {exc}") from None
    where = f"RayService {inp.deploy_namespace}/{inp.name}"
    try:
        previous = read_rayservice(api, inp.name, inp.deploy_namespace)
        apply_rayservice(api, render_rayservice(spec))
        log.info("applied %s serving %s", where, model_uri)
        progress.advance()
        progress.status(f"applied; waiting for {where} to serve model version {version}")
        try:
            wait_serving(api, inp.name, inp.deploy_namespace, inp.rollout_timeout_s, poll_s)
        except RolloutFailed as failure:
            raise StepError(_restore(api, previous, version, failure, where, inp, poll_s)) from None
    except ApiException as exc:
        error = TransientError if exc.status in TRANSIENT_HTTP_STATUS else StepError
        raise error(
            f"Kubernetes API error ({exc.status} {exc.reason}) deploying {where}: {(exc.body or '')[:300]}"
        ) from None
    progress.advance()
    return DeployResult(
        deploy_target=Target.rayservice,
        endpoint_url=f"http://{inp.name}-serve-svc.{inp.deploy_namespace}.svc:{SERVE_PORT}",
        model_uri=model_uri,
        served_version=version,
    )


def _restore(
    api: client.ApiClient,
    previous: dict | None,
    version: str,
    failure: Exception,
    where: str,
    inp: DeployInput,
    poll_s: float,
) -> str:
    reason = f"rollout of model version {version} to {where} failed: {failure}"
    if previous is None:
        return f"{reason}; there was no previous RayService to keep"
    apply_rayservice(api, reapplicable(previous))
    try:
        wait_serving(api, inp.name, inp.deploy_namespace, inp.rollout_timeout_s, poll_s)
    except RolloutFailed as exc:
        return f"{reason}; the previous spec was applied again, but it does not serve either: {exc}"
    args = yaml.safe_load(previous["spec"]["serveConfigV2"])["applications"][0]["args"]
    return f"{reason}; the previous spec ({args.get('model_uri', '?')}) was applied again and keeps serving"
