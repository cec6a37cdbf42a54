"""The deploy step's core: `deploy(DeployInput, Settings) -> DeployResult`, for either target.

- local: the serving app under Gunicorn/Uvicorn on this machine (`local.py`), health-gated rollover.
- container: the serving image on this machine's Podman or Docker, as the Deployment's pod
  (`container.py`), health-gated.
- ray-serve: the app as a Ray Serve application on a running Ray cluster (`ray_serve.py`),
  surged and health-gated, the previous config restored on failure.
- rayservice: a KubeRay RayService running the same Ray Serve application
  (`rayservice_render.py`), applied and awaited, the previous spec applied again on failure
  (`rayservice_apply.py`).
- kubernetes: Deployment + Service rendered (`k8s_render.py`), server-side applied, rollout
  awaited and rolled back on failure (`k8s_apply.py`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shared.errors import StepError
from shared.progress import NO_PROGRESS, Progress
from shared.settings import Settings
from steps.deploy.contract import DeployInput, DeployResult, Target

SERVING_DIR = "serving"


def state_dir(settings: Settings) -> Path:
    """Where the local target keeps its state file, server config and logs: `.local/serving/`."""
    return Path(settings.local_dir).resolve() / SERVING_DIR


def deploy(
    inp: DeployInput,
    settings: Settings,
    *,
    kube_client: Any = None,
    cwd: Path | None = None,
    progress: Progress = NO_PROGRESS,
) -> DeployResult:
    """Roll out `inp.model_uri` to the chosen target; raise StepError (rollout aborted) on failure.

    `progress`: the rollout's phases (`ROLLOUT_PHASES`), each named in the status line."""
    result = _deploy(inp, settings, kube_client, cwd, progress)
    progress.status(f"serving {result.model_uri} (version {result.served_version}) at {result.endpoint_url}")
    progress.finish()
    return result


ROLLOUT_PHASES = (
    3  # local: start or gate a candidate / ready + smoke or switch / confirmed; k8s: apply / rollout / done
)


def _deploy(inp: DeployInput, settings: Settings, kube_client: Any, cwd: Path | None, progress: Progress):
    progress.set_total(ROLLOUT_PHASES)
    progress.status(f"rolling out {inp.model_uri} to {inp.deploy_target.value}")
    if inp.deploy_target == Target.local:
        from steps.deploy.local import rollout_local

        serve_env = dict(inp.serve_env)
        if settings.mlflow_tracking_uri and "MLFLOW_TRACKING_URI" not in serve_env:
            serve_env["MLFLOW_TRACKING_URI"] = settings.mlflow_tracking_uri
        return rollout_local(
            inp.model_copy(update={"serve_env": serve_env}), state_dir(settings), cwd or Path.cwd(), progress
        )
    if inp.deploy_target == Target.container:
        from steps.deploy.container import rollout_container

        return rollout_container(inp, settings, state_dir(settings), progress)
    if inp.deploy_target == Target.ray_serve:
        from steps.deploy.ray_serve import rollout_ray_serve

        return rollout_ray_serve(inp, settings, progress)
    if kube_client is None:
        raise StepError(
            f"the {inp.deploy_target.value} target needs a Kubernetes API client (kube config or in-cluster)"
        )
    if inp.deploy_target == Target.rayservice:
        from steps.deploy.rayservice_apply import rollout_rayservice

        return rollout_rayservice(inp, settings, kube_client, progress=progress)
    from steps.deploy.k8s_deploy import rollout_kubernetes

    return rollout_kubernetes(inp, settings, kube_client, progress=progress)
