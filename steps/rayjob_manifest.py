"""The KubeRay RayJob that runs the hpo step's search on a Ray cluster (hpo-runner=rayjob).

The manifest is rendered by a workflow task (`python -m steps.rayjob_manifest ...`) rather than written
inline in the Argo resource template: Argo substitutes `{{...}}` into a manifest as raw text, which
breaks YAML for multi-line values such as the search space, and a `{{...}}` in an integer field
would not be valid against the CRD. Rendering it in Python serializes every value properly; the
resource template reads it with `manifestFrom.artifact`.

Data reaches the cluster through the artifact repository: the tokenize task stores its output
under a fixed S3 key (content-addressed by its memoization key), and an init container on the Ray
head downloads it before the entrypoint (the Ray driver) starts; the driver puts the arrays in the
object store for the trials on the GPU workers. The search result is recovered afterwards from
MLflow by the workflow uid (`python -m steps.hpo result --workflow-uid ...`).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

import yaml

from shared.pod_shape import container_security_context, pod_security_context
from shared.results import atomic_write_text

AWS_CLI_IMAGE = "amazon/aws-cli:2.15.0"
DATA_DIR = "/data"
TOKENIZED_DIR = f"{DATA_DIR}/tokenized"
S3_SECRET = "emotion-hpo-s3"
CONFIG_MAP = "emotion-hpo-config"

# KubeRay RayJob conditions (see docs/cluster.md): a STOPPED job ends as Complete, so success needs
# both fields, and failure matches any one of its (OR-ed) requirements; backoffLimit 0 keeps a failed
# job from moving to Retrying, which would look like neither.
SUCCESS_CONDITION = "status.jobDeploymentStatus == Complete, status.jobStatus == SUCCEEDED"
FAILURE_CONDITION = "status.jobDeploymentStatus in (Failed, ValidationFailed), status.jobStatus == STOPPED"


def cluster_env(values: dict[str, str]) -> list[dict[str, Any]]:
    """`values` as literals, then the S3 credentials (Secret) and endpoint (ConfigMap) by reference:
    what every Ray pod of the product (this RayJob's, the serving RayService's) gets."""
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in values.items()]
    env += [
        {"name": key, "valueFrom": {"secretKeyRef": {"name": S3_SECRET, "key": key, "optional": True}}}
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    ]
    env.append(
        {
            "name": "MLFLOW_S3_ENDPOINT_URL",
            "valueFrom": {
                "configMapKeyRef": {"name": CONFIG_MAP, "key": "MLFLOW_S3_ENDPOINT_URL", "optional": True}
            },
        }
    )
    return env


def ray_container(
    name: str,
    image: str,
    env: list[dict[str, Any]],
    resources: dict[str, Any],
    *,
    ports: list[dict[str, Any]] | None = None,
    volume_mounts: list[dict[str, Any]] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A Ray head or worker container in the product's pod shape. Its root stays writable: Ray writes
    its session files under /tmp and beside its own package. `fields` go in as given (envFrom, probes)."""
    container: dict[str, Any] = {"name": name, "image": image, "env": env}
    if ports:
        container["ports"] = ports
    container["resources"] = resources
    if volume_mounts:
        container["volumeMounts"] = volume_mounts
    container.update(fields)
    container["securityContext"] = container_security_context(read_only_root=False)
    return container


def ray_pod_template(
    labels: dict[str, str],
    containers: list[dict[str, Any]],
    *,
    volumes: list[dict[str, Any]] | None = None,
    init_containers: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The pod template of a Ray group (head or workers): the product's pod security context."""
    spec: dict[str, Any] = {"securityContext": pod_security_context()}
    if init_containers:
        spec["initContainers"] = init_containers
    spec["containers"] = containers
    if volumes:
        spec["volumes"] = volumes
    return {"metadata": {"labels": labels}, "spec": spec}


def worker_group(
    group_name: str,
    template: dict[str, Any],
    *,
    min_replicas: int,
    max_replicas: int,
    ray_start_params: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A `workerGroupSpecs` entry starting at `min_replicas` pods (the autoscaler, when on, moves it)."""
    return {
        "groupName": group_name,
        "replicas": min_replicas,
        "minReplicas": min_replicas,
        "maxReplicas": max_replicas,
        "rayStartParams": ray_start_params or {},
        "template": template,
    }


def build_rayjob(
    *,
    image: str,
    workflow_uid: str,
    workflow_name: str,
    tokenized_key: str,
    search_space: str,
    search_args: list[str],
    lineage_env: dict[str, str],
    gpu_workers: int = 1,
    active_deadline_seconds: int = 21600,
) -> dict[str, Any]:
    """A RayJob (ray.io/v1) whose entrypoint runs `python -m steps.hpo` (the search) with `search_args`.

    `search_args` are the hpo step's own flags (as the workflow passes them to the in-pod step); the
    search-space path on the head, the Ray address and the result dir are added here.
    """
    entrypoint = shlex.join(
        [
            "python",
            "-m",
            "steps.hpo",
            *search_args,
            "--tokenized-dir",
            TOKENIZED_DIR,
            "--search-space",
            f"{DATA_DIR}/search-space.yaml",
            "--ray-address",
            "auto",
            "--result-dir",
            "/tmp/result",
        ]
    )
    shm = {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}}
    data = {"name": "data", "emptyDir": {}}
    env = cluster_env({**lineage_env, "ARGO_WORKFLOW_UID": workflow_uid})
    fetch = {
        "name": "fetch-inputs",
        "image": AWS_CLI_IMAGE,
        "command": ["sh", "-c"],
        "args": [
            'set -eu; aws s3 cp --recursive "s3://${ARTIFACT_BUCKET}/${TOKENIZED_KEY}/" '
            f'"{DATA_DIR}/tokenized/"; printf "%s" "$SEARCH_SPACE" > "{DATA_DIR}/search-space.yaml"'
        ],
        "env": [
            {"name": "TOKENIZED_KEY", "value": tokenized_key},
            {"name": "SEARCH_SPACE", "value": search_space},
            {
                "name": "ARTIFACT_BUCKET",
                "valueFrom": {"configMapKeyRef": {"name": CONFIG_MAP, "key": "ARTIFACT_BUCKET"}},
            },
            {
                "name": "AWS_ENDPOINT_URL",
                "valueFrom": {
                    "configMapKeyRef": {"name": CONFIG_MAP, "key": "MLFLOW_S3_ENDPOINT_URL", "optional": True}
                },
            },
            *[e for e in env if e["name"].startswith("AWS_")],
        ],
        "volumeMounts": [{"name": "data", "mountPath": DATA_DIR}],
        "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}},
        "securityContext": container_security_context(read_only_root=False),
    }
    head = ray_container(
        "ray-head",
        image,
        env,
        {"requests": {"cpu": "4", "memory": "16Gi"}, "limits": {"memory": "16Gi"}},
        ports=[
            {"containerPort": 6379, "name": "gcs"},
            {"containerPort": 8265, "name": "dashboard"},
            {"containerPort": 10001, "name": "client"},
        ],
        volume_mounts=[{"name": "data", "mountPath": DATA_DIR}, {"name": "dshm", "mountPath": "/dev/shm"}],
    )
    worker = ray_container(
        "ray-worker",
        image,
        env,
        {
            "requests": {"cpu": "16", "memory": "64Gi", "nvidia.com/gpu": "1"},
            "limits": {"memory": "64Gi", "nvidia.com/gpu": "1"},
        },
        volume_mounts=[{"name": "dshm", "mountPath": "/dev/shm"}],
    )
    labels = {"app.kubernetes.io/part-of": "emotion-hpo", "workflows.argoproj.io/workflow": workflow_name}
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"generateName": "emotion-hpo-", "labels": labels},
        "spec": {
            "entrypoint": entrypoint,
            "submissionMode": "K8sJobMode",
            "shutdownAfterJobFinishes": True,
            "ttlSecondsAfterFinished": 600,
            "activeDeadlineSeconds": active_deadline_seconds,
            "backoffLimit": 0,
            "rayClusterSpec": {
                "headGroupSpec": {
                    "rayStartParams": {"dashboard-host": "0.0.0.0", "num-gpus": "0"},
                    "template": ray_pod_template(
                        labels, [head], volumes=[data, shm], init_containers=[fetch]
                    ),
                },
                "workerGroupSpecs": [
                    worker_group(
                        "gpu",
                        ray_pod_template(labels, [worker], volumes=[shm]),
                        min_replicas=gpu_workers,
                        max_replicas=gpu_workers,
                    )
                ],
            },
        },
    }


# The environment every step gets from a workflow parameter (the RayJob's driver too).
ENV_PARAMETERS = {
    "MLFLOW_TRACKING_URI": "mlflow-tracking-uri",
    "MLFLOW_EXPERIMENT_NAME": "mlflow-experiment-name",
    "DOCKER_IMAGE_TAG": "image-tag",
}
LINEAGE_ENV = tuple(ENV_PARAMETERS)
# The hpo fields the RayJob fills in itself (paths on the Ray head, Ray's address).
ADDED_FIELDS = ("tokenized_dir", "search_space", "ray_address")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """`python -m steps.rayjob_manifest <own flags> -- <hpo step flags>`: render the manifest."""
    from shared.step_cli import build_parser
    from steps.hpo.contract import HpoInput

    argv = list(sys.argv[1:] if argv is None else argv)
    own, search_args = (
        (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    )
    parser = argparse.ArgumentParser(
        prog="python -m steps.rayjob_manifest",
        description="Render the KubeRay RayJob manifest that runs the hpo search (used by the workflow). "
        "The hpo step's flags follow `--`.",
    )
    parser.add_argument("--image", required=True)
    parser.add_argument("--workflow-uid", required=True)
    parser.add_argument("--workflow-name", required=True)
    parser.add_argument("--tokenized-key", required=True, help="S3 key (prefix) of the tokenized data")
    parser.add_argument("--search-space-file", type=Path, required=True, help="YAML file of the search space")
    for name in LINEAGE_ENV:
        parser.add_argument(f"--env-{name.lower().replace('_', '-')}", dest=name, required=True)
    parser.add_argument("--output", type=Path, required=True, help="where to write the manifest (YAML)")
    ns = vars(parser.parse_args(own))
    # The same parser as `python -m steps.hpo`: a flag the step would refuse fails here, before the cluster.
    build_parser(HpoInput, "python -m steps.hpo").parse_args(search_args)
    manifest = build_rayjob(
        image=ns["image"],
        workflow_uid=ns["workflow_uid"],
        workflow_name=ns["workflow_name"],
        tokenized_key=ns["tokenized_key"],
        search_space=Path(ns["search_space_file"]).read_text(),
        search_args=search_args,
        lineage_env={name: ns[name] for name in LINEAGE_ENV},
    )
    atomic_write_text(ns["output"], yaml.safe_dump(manifest, sort_keys=False))
    return manifest


if __name__ == "__main__":
    main()
