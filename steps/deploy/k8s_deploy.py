"""Kubernetes target: resolve the model version, render, apply, wait; roll back when the rollout fails."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from typing import Any

from shared.errors import StepError, TransientError
from shared.failures import TRANSIENT_HTTP_STATUS
from shared.progress import NO_PROGRESS, Progress
from shared.settings import Settings
from steps.deploy import k8s_apply
from steps.deploy.contract import DeployInput, DeployResult, Target
from steps.deploy.k8s_render import MODEL_VERSION_ANNOTATION, K8sSpec, endpoint_url, render

log = logging.getLogger(__name__)

_ALIAS_URI = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/]+)/?$")
_VERSION_URI = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)/?$")


def resolve_model_version(model_uri: str, tracking_uri: str | None) -> tuple[str, str]:
    """(pinned model URI, version). An alias is resolved now, so pods never drift to a later champion."""
    if match := _VERSION_URI.match(model_uri):
        return model_uri, match["version"]
    if match := _ALIAS_URI.match(model_uri):
        from mlflow import MlflowClient

        try:
            mv = MlflowClient(
                tracking_uri=tracking_uri, registry_uri=tracking_uri
            ).get_model_version_by_alias(match["name"], match["alias"])
        except Exception as exc:  # MLflow raises several types for a missing model/alias or a dead server
            raise StepError(
                f"cannot resolve {model_uri} in the MLflow registry at {tracking_uri}: {exc}"
            ) from exc
        return f"models:/{match['name']}/{mv.version}", str(mv.version)
    return model_uri, "uri-" + hashlib.sha256(model_uri.encode()).hexdigest()[:12]


def platform_env(settings: Settings) -> dict[str, str]:
    """Non-secret platform settings the pods need (credentials come from the Secret)."""
    env = {
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "MLFLOW_S3_ENDPOINT_URL": settings.mlflow_s3_endpoint_url,
    }
    return {k: v for k, v in env.items() if v}


def rollout_kubernetes(
    inp: DeployInput,
    settings: Settings,
    api: Any,
    *,
    resolver: Callable[[str, str | None], tuple[str, str]] = resolve_model_version,
    poll_s: float = 2.0,
    progress: Progress = NO_PROGRESS,
) -> DeployResult:
    if not inp.image:
        raise StepError("--image is required for --deploy-target kubernetes (the serving image with its tag)")
    model_uri, version = resolver(inp.model_uri, settings.mlflow_tracking_uri)
    spec = K8sSpec(
        name=inp.name,
        namespace=inp.deploy_namespace,
        image=inp.image,
        model_uri=model_uri,
        model_version=version,
        replicas=inp.replicas,
        secret_name=inp.secret_name,
        env=platform_env(settings),
        progress_deadline_s=max(int(inp.rollout_timeout_s), 60),
    )
    from kubernetes.client.exceptions import ApiException

    try:
        for manifest in render(spec):
            k8s_apply.apply_manifest(api, manifest)
            log.info("applied %s %s/%s", manifest["kind"], inp.deploy_namespace, inp.name)
        progress.advance()
        progress.status(f"applied; waiting for the rollout of {inp.deploy_namespace}/{inp.name}")
        try:
            k8s_apply.wait_for_rollout(
                api, inp.name, inp.deploy_namespace, inp.rollout_timeout_s, poll_s=poll_s
            )
        except k8s_apply.RolloutFailed as failure:
            raise StepError(_roll_back(api, version, failure, inp, poll_s)) from None
    except ApiException as exc:
        # 429/5xx (API server overloaded or restarting): retried; 4xx (RBAC, invalid object): bad input
        error = TransientError if exc.status in TRANSIENT_HTTP_STATUS else StepError
        raise error(
            f"Kubernetes API error ({exc.status} {exc.reason}) deploying {inp.deploy_namespace}/{inp.name}: "
            f"{(exc.body or '')[:300]}"
        ) from None
    progress.advance()
    url = endpoint_url(spec)
    return DeployResult(
        deploy_target=Target.kubernetes, endpoint_url=url, model_uri=model_uri, served_version=version
    )


def _roll_back(api: Any, version: str, failure: Exception, inp: DeployInput, poll_s: float) -> str:
    """Undo a failed rollout; return the message the step fails with."""
    reason = f"rollout of model version {version} to {inp.deploy_namespace}/{inp.name} failed: {failure}"
    current = k8s_apply.read_deployment(api, inp.name, inp.deploy_namespace)
    revision = k8s_apply.rollback(api, current)
    if revision is None:
        return f"{reason}; there is no previous revision to roll back to"
    try:
        restored = k8s_apply.wait_for_rollout(
            api, inp.name, inp.deploy_namespace, inp.rollout_timeout_s, poll_s=poll_s
        )
    except k8s_apply.RolloutFailed as exc:
        return f"{reason}; rolled back to revision {revision}, but that did not become ready either: {exc}"
    previous = (
        restored["spec"]["template"]["metadata"].get("annotations", {}).get(MODEL_VERSION_ANNOTATION, "?")
    )
    return f"{reason}; rolled back to revision {revision} (model version {previous}), which is serving"
