"""`python -m steps.deploy rollout|stop|status`: the thin CLI around `steps.deploy.core`.

    python -m steps.deploy rollout --model-uri models:/emotion-classifier@champion --target local \\
        --host 127.0.0.1 --port 8000 --result-dir /tmp/result
    python -m steps.deploy rollout --model-uri models:/emotion-classifier@champion --target kubernetes \\
        --image ghcr.io/acme/emotion-serving:1.2.3 --namespace emotion --result-dir /tmp/result
    python -m steps.deploy status     # what the local target runs (JSON)
    python -m steps.deploy stop       # stop the local server gracefully (`make stop`)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from shared.cli import run_step
from shared.settings import Settings
from steps.deploy.core import deploy, state_dir
from steps.deploy.schemas import DeployInput, Target

app = typer.Typer(add_completion=False, help=__doc__, no_args_is_help=True)

# SERVE_* settings the local server takes over from the deploy step's environment (the bind
# address and the model URI are the step's own inputs).
_OWN_SERVE_VARS = {"SERVE_MODEL_URI", "SERVE_HOST", "SERVE_PORT"}


def _serve_env_from_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith("SERVE_") and k not in _OWN_SERVE_VARS}


def _kube_client():
    """An API client from the pod's service account, else from the kube config (KUBECONFIG)."""
    from kubernetes import client, config

    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()
    else:
        config.load_kube_config()
    return client.ApiClient()


@app.command()
def rollout(
    model_uri: str = typer.Option(
        ..., help="models:/name@alias, models:/name/N, runs:/<id>/model or a model dir."
    ),
    target: Target = typer.Option(Target.local, help="local (Gunicorn on this machine) or kubernetes."),
    host: str = typer.Option("127.0.0.1", help="local: bind address."),
    port: int = typer.Option(8000, help="local: bind port."),
    workers: int = typer.Option(1, help="local: Uvicorn worker processes."),
    ready_timeout_s: float = typer.Option(
        300.0, help="local: how long a new instance may take to pass its gate."
    ),
    graceful_timeout_s: int = typer.Option(
        30, help="local: how long old workers may drain in-flight requests."
    ),
    image: str = typer.Option(None, help="kubernetes: the serving image (with its tag)."),
    namespace: str = typer.Option("default", help="kubernetes: namespace."),
    name: str = typer.Option("emotion-serving", help="kubernetes: Deployment/Service name."),
    replicas: int = typer.Option(2, help="kubernetes: replicas."),
    secret_name: str = typer.Option(
        "emotion-mlflow-credentials", help="kubernetes: Secret with AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY."
    ),
    rollout_timeout_s: float = typer.Option(600.0, help="kubernetes: how long the rollout may take."),
    result_dir: Path = typer.Option(None, help="Where result.json and one file per field go."),
) -> None:
    """Roll out a model: start or health-gated rollover (local), or apply + wait + roll back (kubernetes)."""
    settings = Settings()
    inp = DeployInput(
        model_uri=model_uri,
        target=target,
        host=host,
        port=port,
        workers=workers,
        ready_timeout_s=ready_timeout_s,
        graceful_timeout_s=graceful_timeout_s,
        serve_env=_serve_env_from_environment(),
        image=image,
        namespace=namespace,
        name=name,
        replicas=replicas,
        secret_name=secret_name,
        rollout_timeout_s=rollout_timeout_s,
    )

    def core():
        kube = _kube_client() if inp.target == Target.kubernetes else None
        return deploy(inp, settings, kube_client=kube)

    result = run_step("deploy", core, result_dir)
    typer.echo(result.model_dump_json())


@app.command()
def stop() -> None:
    """Stop the local inference server gracefully (in-flight requests finish) and clear its state."""
    from steps.deploy.local import stop_local

    typer.echo(json.dumps(stop_local(state_dir(Settings())), indent=2))


@app.command()
def status() -> None:
    """Print the local deployment's state (model version, URL, pids, log file) and whether it is ready."""
    from steps.deploy.local import status_local

    typer.echo(json.dumps(status_local(state_dir(Settings())), indent=2))
