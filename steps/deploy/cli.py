"""`python -m steps.deploy rollout|stop|status`: the CLI around `steps.deploy.core`.

`rollout`'s flags are generated from `steps.deploy.contract.DeployInput`:

    python -m steps.deploy rollout --model-uri models:/emotion-classifier/3 --deploy-target local \\
        --host 127.0.0.1 --serving-port 8000 --result-dir /tmp/result
    python -m steps.deploy rollout --model-uri models:/emotion-classifier/3 --deploy-target kubernetes \\
        --image ghcr.io/acme/emotion-serving:1.2.3 --deploy-namespace emotion --result-dir /tmp/result
    python -m steps.deploy rollout --model-uri models:/emotion-classifier/3 --deploy-target container \
        --image localhost/emotion-hpo-serving:<commit> --serving-port 8000 --result-dir /tmp/result
    python -m steps.deploy status     # what the local and container targets run (JSON)
    python -m steps.deploy stop       # stop them gracefully (`make stop`)
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence

from shared.environment import PlatformEnvironment
from shared.errors import StepError
from shared.progress import Progress
from shared.settings import Settings
from shared.step_cli import run_cli
from steps.deploy.contract import DeployInput, Target

PROG = "python -m steps.deploy"

# SERVE_* settings the local server takes over from the deploy step's environment (the bind
# address and the model URI are the step's own inputs).
_OWN_SERVE_VARS = {"SERVE_MODEL_URI", "SERVE_HOST", "SERVE_PORT"}


def _serve_env_from_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith("SERVE_") and k not in _OWN_SERVE_VARS}


def _kube_client():
    """An API client from the pod's service account, else from the kube config (KUBECONFIG)."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    try:
        env = PlatformEnvironment()
        if env.kubernetes_service_host:
            config.load_incluster_config()
        else:
            config.load_kube_config(config_file=env.kubeconfig)  # read now, not at import
    except ConfigException as exc:
        raise StepError(f"no usable Kubernetes configuration (KUBECONFIG or in-cluster): {exc}") from None
    return client.ApiClient()


def rollout(argv: Sequence[str]) -> None:
    """Roll out a model: start or health-gated rollover (local), or apply + wait + roll back (kubernetes)."""
    from steps.deploy.core import deploy

    def core(inp: DeployInput):
        inp = inp.model_copy(update={"serve_env": _serve_env_from_environment()})
        kube = _kube_client() if inp.deploy_target in (Target.kubernetes, Target.rayservice) else None
        return deploy(inp, Settings(), kube_client=kube, progress=Progress.from_env(unit="rollout phases"))

    result = run_cli("deploy", DeployInput, core, argv, prog=f"{PROG} rollout")
    print(result.model_dump_json())


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv else ""
    if command == "rollout":
        rollout(argv[1:])
        return
    if command in ("stop", "status") and len(argv) == 1:
        from steps.deploy.container import status_container, stop_container
        from steps.deploy.core import state_dir
        from steps.deploy.local import status_local, stop_local

        folder = state_dir(Settings())
        # the local target's report as before; the container target's under "container"
        if command == "stop":
            report = {**stop_local(folder), "container": stop_container(folder) or {"stopped": False}}
        else:
            report = {**status_local(folder), "container": status_container(folder) or {"running": False}}
        print(json.dumps(report, indent=2))
        return
    print(__doc__, file=sys.stderr)
    sys.exit(0 if command in ("-h", "--help") else 2)
