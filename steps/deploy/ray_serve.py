"""Ray Serve target: the serving app (`serving.ray_app`) on a running Ray cluster, health-gated.

The step talks to Serve's public REST deploy API on the cluster's dashboard (what `serve deploy`
and KubeRay use): it reads the running config, replaces only this application's entry (a Serve
config is declarative: an application left out would be deleted) and submits it.

Gate: Serve surges an upgrade (serving.ray_app) and routes to a replica only once its model is
loaded and warmed up, so the old version serves until the new one can. The step waits for the
application to run the new config and for `/ready` and a smoke prediction through the proxy to
report the new version. If the new version fails (a replica cannot start, or the gate times out)
the previous config is submitted again: the old replicas, still running, keep serving.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
from ray.serve.schema import ServeApplicationSchema, ServeDeploySchema, ServeInstanceDetails

from serving.model_loader import reported_version
from serving.ray_app import APP_NAME
from shared.errors import StepError, TransientError
from shared.progress import NO_PROGRESS, Progress
from shared.settings import Settings
from steps.deploy.contract import DeployInput, DeployResult, Target
from steps.deploy.k8s_deploy import platform_env, resolve_model_version
from steps.deploy.probe import smoke_predict

IMPORT_PATH = "serving.ray_app:app_builder"
API_PATH = "/api/serve/applications/"
SERVE_PREFIX = "SERVE_"
# how many gate probes in a row must see the new version (they land on random replicas)
CONFIRMATIONS = 3
DEFAULT_TOKEN_PATH = "~/.ray/auth_token"  # where `ray start` / `ray get-auth-token --generate` keep it


def serve_args(model_uri: str, serve_env: dict[str, str]) -> dict[str, str]:
    """The app builder's arguments: the model and the step's SERVE_* settings, as ServeSettings fields."""
    args = {key[len(SERVE_PREFIX) :].lower(): value for key, value in serve_env.items()}
    args = {key: value for key, value in args.items() if key not in ("host", "port", "model_uri")}
    return {**dict(sorted(args.items())), "model_uri": model_uri}


def app_config(model_uri: str, inp: DeployInput, settings: Settings) -> dict[str, Any]:
    """This application's entry of the Serve config."""
    runtime_env = {"env_vars": platform_env(settings)} if platform_env(settings) else {}
    app = {
        "name": APP_NAME,
        "route_prefix": "/",
        "import_path": IMPORT_PATH,
        "args": serve_args(model_uri, inp.serve_env),
        "runtime_env": runtime_env,
    }
    return ServeApplicationSchema.model_validate(app).model_dump(exclude_unset=True)


def rollout_ray_serve(
    inp: DeployInput, settings: Settings, progress: Progress = NO_PROGRESS, poll_s: float = 0.5
) -> DeployResult:
    """Deploy `inp.model_uri` as this application; on failure, submit the previous config again."""
    api = inp.ray_dashboard_url.rstrip("/") + API_PATH
    url = endpoint_url(inp)
    model_uri, version = resolve_model_version(inp.model_uri, settings.mlflow_tracking_uri)
    version = reported_version(model_uri) or version  # what the replicas' /ready will say
    current = read_instance(api)
    previous = _running_config(current)
    progress.status(f"submitting {model_uri} to Ray Serve at {inp.ray_dashboard_url}")
    submitted_at = time.time()
    submit(api, _deploy_config(current, app_config(model_uri, inp, settings), inp))
    progress.advance()
    try:
        _wait_running(api, submitted_at, inp.ready_timeout_s, poll_s)
        progress.status(f"gating {url} on model version {version}")
        _wait_version(url, version, inp.ready_timeout_s, poll_s)
        served = smoke_predict(url)
        progress.advance()
    except StepError as exc:
        if previous is not None:
            restored_at = time.time()
            submit(api, previous)
            try:  # the old replicas still run that config: Serve goes back to RUNNING at once
                _wait_running(api, restored_at, inp.ready_timeout_s, poll_s)
            except StepError as restore:
                raise StepError(f"{exc}; restoring the previous config failed too: {restore}") from None
            kept = previous.applications[0].args.get("model_uri") if previous.applications else None
            raise StepError(f"{exc}; the previous config is restored and {kept} keeps serving") from None
        submit(api, _deploy_config(read_instance(api), None, inp))
        raise StepError(f"{exc}; the application was removed") from None
    progress.advance()
    return DeployResult(
        deploy_target=Target.ray_serve, endpoint_url=url, model_uri=model_uri, served_version=served
    )


def endpoint_url(inp: DeployInput) -> str:
    """The Serve proxy on the dashboard's host (the head node), on the serving port."""
    host = urlparse(inp.ray_dashboard_url).hostname or "127.0.0.1"
    return f"http://{host}:{inp.serving_port}"


def auth_headers() -> dict[str, str]:
    """The bearer token of a cluster with Ray's token authentication, found where Ray's own clients
    look (docs.ray.io, ray-security/token-auth): RAY_AUTH_TOKEN, the file RAY_AUTH_TOKEN_PATH names,
    else ~/.ray/auth_token. None found: no header (a cluster without authentication)."""
    from shared.environment import PlatformEnvironment

    env = PlatformEnvironment()
    token = env.ray_auth_token
    if not token:
        path = Path(env.ray_auth_token_path or DEFAULT_TOKEN_PATH).expanduser()
        if env.ray_auth_token_path and not path.is_file():
            raise StepError(f"RAY_AUTH_TOKEN_PATH={env.ray_auth_token_path} is not a readable file")
        token = path.read_text().strip() if path.is_file() else None
    return {"Authorization": f"Bearer {token}"} if token else {}


def _refused(api: str, response: httpx.Response) -> StepError:
    if response.status_code in (401, 403):
        return StepError(
            f"the Ray dashboard at {api} refused the request (HTTP {response.status_code}: "
            f"{response.text[:120]}): the cluster uses token authentication; set RAY_AUTH_TOKEN or "
            "RAY_AUTH_TOKEN_PATH to its token (`ray get-auth-token` on the head)"
        )
    return StepError(f"Ray Serve REST API {api}: HTTP {response.status_code}: {response.text[:300]}")


def read_instance(api: str) -> ServeInstanceDetails:
    try:
        response = httpx.get(api, timeout=30, headers=auth_headers())
    except httpx.HTTPError as exc:  # the cluster may be starting: retried (exit 75)
        raise TransientError(f"Ray dashboard at {api} does not answer: {exc}") from None
    if response.status_code in (401, 403):
        raise _refused(api, response)
    if response.status_code != 200:
        raise StepError(f"Ray Serve REST API {api}: HTTP {response.status_code}: {response.text[:300]}")
    return ServeInstanceDetails.model_validate(response.json())


def submit(api: str, config: ServeDeploySchema, attempts: int = 10) -> None:
    """PUT the config; a 5xx (Serve's controller still starting on a fresh cluster) is tried again."""
    body = config.model_dump(mode="json", exclude_unset=True)
    for attempt in range(attempts):
        try:
            response = httpx.put(api, json=body, timeout=60, headers=auth_headers())
        except httpx.HTTPError as exc:
            raise TransientError(f"Ray dashboard at {api} does not answer: {exc}") from None
        if response.status_code == 200:
            return
        if response.status_code in (401, 403):
            raise _refused(api, response)
        if response.status_code < 500:
            break
        time.sleep(min(2.0 * (attempt + 1), 10.0))
    raise StepError(f"Ray Serve refused the config: HTTP {response.status_code}: {response.text[:500]}")


def _others(instance: ServeInstanceDetails) -> list[ServeApplicationSchema]:
    return [
        app.deployed_app_config
        for name, app in instance.applications.items()
        if name != APP_NAME and app.deployed_app_config is not None
    ]


def _running_config(instance: ServeInstanceDetails) -> ServeDeploySchema | None:
    """The config to restore: today's, if this application runs (its last deploy succeeded)."""
    app = instance.applications.get(APP_NAME)
    if app is None or app.deployed_app_config is None or app.status != "RUNNING":
        return None
    http = instance.http_options.model_dump(exclude_unset=True) if instance.http_options else None
    return _as_config([*_others(instance), app.deployed_app_config], http, instance.proxy_location)


def _deploy_config(instance: ServeInstanceDetails, ours: dict | None, inp: DeployInput) -> ServeDeploySchema:
    apps = [*_others(instance), *([ServeApplicationSchema.model_validate(ours)] if ours else [])]
    if instance.http_options is None or not instance.applications:  # Serve starts with this proxy
        return _as_config(apps, {"host": inp.host, "port": inp.serving_port}, inp.ray_proxy_location)
    return _as_config(apps, instance.http_options.model_dump(exclude_unset=True), instance.proxy_location)


def _as_config(
    apps: list[ServeApplicationSchema], http_options: dict | None = None, proxy_location: Any = None
) -> ServeDeploySchema:
    fields: dict[str, Any] = {"applications": [app.model_dump(exclude_unset=True) for app in apps]}
    if http_options:
        fields["http_options"] = http_options
    if proxy_location is not None:
        fields["proxy_location"] = proxy_location
    return ServeDeploySchema.model_validate(fields)


def _wait_running(api: str, submitted_at: float, timeout_s: float, poll_s: float) -> None:
    """Until this application ran the config submitted at `submitted_at`, or failed to."""
    deadline = time.monotonic() + timeout_s
    status, message = "NOT_STARTED", ""
    while time.monotonic() < deadline:
        app = read_instance(api).applications.get(APP_NAME)
        if app is not None and app.last_deployed_time_s >= submitted_at - 1:
            status, message = getattr(app.status, "value", app.status), app.message
            if status == "RUNNING":
                return
            if status in ("DEPLOY_FAILED", "UNHEALTHY"):
                details = "; ".join(d.message for d in app.deployments.values() if d.message)
                why = message or details
                raise StepError(f"Ray Serve could not deploy the new version ({status}): {why}")
        time.sleep(poll_s)
    raise StepError(f"the new version did not start within {timeout_s:g} s (last status {status}: {message})")


def _wait_version(url: str, version: str, timeout_s: float, poll_s: float) -> None:
    """Until `/ready` through the proxy reports `version` CONFIRMATIONS times in a row."""
    deadline, seen, streak = time.monotonic() + timeout_s, None, 0
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"{url}/ready", timeout=10)
            seen = response.json().get("model_version") if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            seen = None
        streak = streak + 1 if seen == version else 0
        if streak >= CONFIRMATIONS:
            return
        time.sleep(poll_s)
    raise StepError(f"{url}/ready did not report version {version} within {timeout_s:g} s (last: {seen})")
