"""The KubeRay RayService (ray.io/v1) that serves the model with Ray Serve on Kubernetes.

`spec.serveConfigV2` runs `serving.ray_app:app_builder` (the same app as the other hosts, settings
as its arguments); `spec.rayClusterConfig` is a head that only coordinates and one autoscaled CPU
worker group for the replicas. The pods are built with the RayJob's helpers
(`steps.rayjob_manifest`): the product's pod shape and the cluster env (S3 by reference), plus the
MLflow environment from a Secret. Print it with

    python -m steps.deploy.rayservice_render --model-uri models:/emotion-classifier/1 --image IMG
"""

from __future__ import annotations

import argparse
import importlib.metadata
import math
import sys
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from serving import ray_app, ray_proxy
from serving.settings import ServeSettings
from steps.rayjob_manifest import cluster_env, ray_container, ray_pod_template, worker_group

SERVE_PORT = 8000  # KubeRay's default serving port; the serve Service targets the port named `serve`
IMPORT_PATH = f"{ray_app.__name__}:{ray_app.app_builder.__name__}"
# the app builder's arguments this spec sets itself; `serve_args` carries any other ServeSettings field
OWN_ARGS = ("model_uri", "replicas", "max_replicas", "cpus_per_replica")
# Ray Serve's proxy health endpoint (what KubeRay's own worker readiness check asks)
PROXY_HEALTH_PATH = "/-/healthz"
# every pod runs a proxy (EveryNode); each resends a request whose replica died (serving.ray_proxy)
PROXY_ENV = ray_proxy.NODE_ENV


class RayServiceSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # KubeRay: a DNS-1035 label of at most 47 characters (its cluster names add suffixes)
    name: str = Field(default="emotion-classifier", max_length=47, pattern=r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
    namespace: str = "emotion"
    image: str = Field(min_length=1, description="an image with Ray, Ray Serve and serving/ installed")
    model_uri: str = Field(min_length=1)
    env_secret: str = Field(
        default="emotion-serving-env",
        description="Secret whose keys become env: MLFLOW_TRACKING_URI and any MLFLOW_TRACKING_* credentials",
    )
    min_replicas: int = Field(default=1, ge=1)
    max_replicas: int = Field(default=4, ge=1)
    cpus_per_replica: float = Field(default=1.0, gt=0)
    serve_args: dict[str, Any] = Field(default_factory=dict, description="other ServeSettings fields")
    head_cpu: str = "2"
    head_memory: str = "4Gi"
    worker_cpus: int = Field(default=2, ge=1)
    worker_memory: str = "8Gi"
    # KubeRay picks its health probes by it: from 2.53 plain HTTP ones (the slim images have no wget)
    ray_version: str = Field(default_factory=lambda: importlib.metadata.version("ray"))

    @model_validator(mode="after")
    def _check(self) -> RayServiceSpec:
        if self.max_replicas < self.min_replicas:
            raise ValueError(f"max_replicas ({self.max_replicas}) is below min_replicas {self.min_replicas}")
        if self.cpus_per_replica > self.worker_cpus:
            raise ValueError(
                f"a replica ({self.cpus_per_replica} CPUs) does not fit a worker's {self.worker_cpus} CPUs"
            )
        # the app builder refuses unknown fields on the cluster; refuse them here, before applying
        bad = sorted(set(self.serve_args) - (set(ServeSettings.model_fields) - set(OWN_ARGS)))
        if bad:
            raise ValueError(f"serve_args {bad} are not ServeSettings fields or are set by the spec itself")
        ServeSettings(**serve_config(self)["applications"][0]["args"])  # the values too, as the builder will
        return self

    def workers_for(self, replicas: int) -> int:
        """Worker pods that hold `replicas` Serve replicas (whole replicas per pod)."""
        return math.ceil(replicas / math.floor(self.worker_cpus / self.cpus_per_replica))


def serve_config(spec: RayServiceSpec) -> dict[str, Any]:
    """The Ray Serve config (a ServeDeploySchema) KubeRay submits to the cluster."""
    args = {
        "model_uri": spec.model_uri,
        "replicas": spec.min_replicas,
        "max_replicas": spec.max_replicas,
        "cpus_per_replica": spec.cpus_per_replica,
        **spec.serve_args,
    }
    return {
        "proxy_location": "EveryNode",  # every pod proxies, so the serve Service may pick any ready pod
        "http_options": {"host": "0.0.0.0", "port": SERVE_PORT},
        "applications": [
            {"name": ray_app.APP_NAME, "route_prefix": "/", "import_path": IMPORT_PATH, "args": args}
        ],
    }


def render_rayservice(spec: RayServiceSpec) -> dict[str, Any]:
    # Not the Deployment's labels: its Service selects by them and would send traffic to Ray pods.
    labels = {
        "app.kubernetes.io/name": "emotion-serving-ray",
        "app.kubernetes.io/instance": spec.name,
        "app.kubernetes.io/part-of": "emotion-hpo",
    }
    env_from = [{"secretRef": {"name": spec.env_secret}}]  # not optional: no tracking URI, no model
    serve_port = {"containerPort": SERVE_PORT, "name": "serve"}
    head = ray_container(
        "ray-head",
        spec.image,
        cluster_env(PROXY_ENV),
        {
            "requests": {"cpu": spec.head_cpu, "memory": spec.head_memory},
            "limits": {"memory": spec.head_memory},
        },
        ports=[
            {"containerPort": 6379, "name": "gcs"},
            {"containerPort": 8265, "name": "dashboard"},
            {"containerPort": 10001, "name": "client"},
            serve_port,
        ],
        envFrom=env_from,
    )
    worker_resources = {"cpu": str(spec.worker_cpus), "memory": spec.worker_memory}
    worker = ray_container(
        "ray-worker",
        spec.image,
        cluster_env(PROXY_ENV),
        {"requests": worker_resources, "limits": worker_resources},  # Ray counts the limit's CPUs
        ports=[serve_port],
        envFrom=env_from,
        # Replaces KubeRay's injected worker readiness (a wget of the same path, absent from our
        # images): a worker joins the serve Service once its proxy answers. Liveness stays KubeRay's.
        readinessProbe={
            "httpGet": {"path": PROXY_HEALTH_PATH, "port": "serve"},
            "initialDelaySeconds": 10,
            "periodSeconds": 5,
            "timeoutSeconds": 2,
            "failureThreshold": 1,  # KubeRay's value: a draining proxy leaves the Service at once
        },
    )
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": spec.name, "namespace": spec.namespace, "labels": labels},
        "spec": {
            "serveConfigV2": yaml.safe_dump(serve_config(spec), sort_keys=False),
            # A changed rayClusterConfig starts a new RayCluster; the old one serves until the new
            # one's Serve apps run, then traffic switches (a changed serveConfigV2 alone is rolled out
            # by Serve in place). Explicit: it wins over an operator's ENABLE_ZERO_DOWNTIME=false.
            "upgradeStrategy": {"type": "NewCluster"},
            "rayClusterConfig": {
                "rayVersion": spec.ray_version,
                # Serve's autoscaler asks for replicas, Ray's autoscaler adds the worker pods they need
                "enableInTreeAutoscaling": True,
                "autoscalerOptions": {"securityContext": worker["securityContext"]},  # its sidecar too
                "headGroupSpec": {
                    # no CPUs for Ray on the head: replicas land on workers, the head only coordinates
                    "rayStartParams": {"dashboard-host": "0.0.0.0", "num-cpus": "0"},
                    "template": ray_pod_template(labels, [head]),
                },
                "workerGroupSpecs": [
                    worker_group(
                        "cpu",
                        ray_pod_template(labels, [worker]),
                        min_replicas=spec.workers_for(spec.min_replicas),
                        max_replicas=spec.workers_for(spec.max_replicas),
                    )
                ],
            },
        },
    }


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True  # the pods share env and securityContext objects: write each out, not as &id001


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # serveConfigV2 as a literal block, readable in `kubectl get -o yaml` diffs and reviews
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _str)


def to_yaml(manifest: dict[str, Any]) -> str:
    return yaml.dump(manifest, Dumper=_Dumper, sort_keys=False)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """`python -m steps.deploy.rayservice_render --model-uri URI --image IMG ...`: print the manifest."""
    parser = argparse.ArgumentParser(
        prog="python -m steps.deploy.rayservice_render",
        description="Print the KubeRay RayService manifest that serves the model with Ray Serve.",
    )
    parser.add_argument("--model-uri", required=True)
    parser.add_argument("--image", required=True)
    defaults = {name: field.default for name, field in RayServiceSpec.model_fields.items()}
    parser.add_argument("--name", default=defaults["name"])
    parser.add_argument("--namespace", default=defaults["namespace"])
    parser.add_argument(
        "--env-secret", default=defaults["env_secret"], help="Secret with MLFLOW_TRACKING_URI"
    )
    parser.add_argument("--min-replicas", type=int, default=defaults["min_replicas"])
    parser.add_argument("--max-replicas", type=int, default=defaults["max_replicas"])
    parser.add_argument("--cpus-per-replica", type=float, default=defaults["cpus_per_replica"])
    parser.add_argument(
        "--serve-arg",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="another ServeSettings field for the app builder (repeatable), e.g. max_batch_size=32",
    )
    ns = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if bad := [a for a in ns.serve_arg if "=" not in a]:
        parser.error(f"--serve-arg needs FIELD=VALUE: {bad}")
    try:
        spec = RayServiceSpec(
            name=ns.name,
            namespace=ns.namespace,
            image=ns.image,
            model_uri=ns.model_uri,
            env_secret=ns.env_secret,
            min_replicas=ns.min_replicas,
            max_replicas=ns.max_replicas,
            cpus_per_replica=ns.cpus_per_replica,
            serve_args=dict(a.split("=", 1) for a in ns.serve_arg),
        )
    except ValueError as exc:  # pydantic's ValidationError: a usage error, not a traceback
        parser.error(str(exc))
    manifest = render_rayservice(spec)
    sys.stdout.write(to_yaml(manifest))
    return manifest


if __name__ == "__main__":
    main()
