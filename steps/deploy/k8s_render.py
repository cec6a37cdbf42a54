"""Render the serving Deployment + Service (plain dicts, ready for server-side apply).

The model version goes into a pod-template annotation, so promoting a new model changes the
template and triggers a rolling update even when the model URI (an alias) reads the same.
Rolling updates never drop below the desired replicas (maxUnavailable 0); a new pod gets
traffic only once `/ready` passes. Pods run non-root on a read-only root filesystem, with an
emptyDir for the model cache and /tmp. MLflow/S3 credentials come from a Secret by reference.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from shared.pod_shape import container_security_context, pod_security_context

MODEL_VERSION_ANNOTATION = "emotion-hpo.io/model-version"
MODEL_URI_ANNOTATION = "emotion-hpo.io/model-uri"
FIELD_MANAGER = "emotion-deploy"
CONTAINER_PORT = 8000


class K8sSpec(BaseModel):
    name: str
    namespace: str
    image: str = Field(min_length=1)
    model_uri: str
    model_version: str
    replicas: int = 2
    secret_name: str = "emotion-mlflow-credentials"
    env: dict[str, str] = Field(
        default_factory=dict, description="MLFLOW_TRACKING_URI, MLFLOW_S3_ENDPOINT_URL, ..."
    )
    cpu_request: str = "500m"
    cpu_limit: str = "2"
    memory_request: str = "1Gi"
    memory_limit: str = "2Gi"
    progress_deadline_s: int = 600


def labels(spec: K8sSpec) -> dict[str, str]:
    return {"app.kubernetes.io/name": "emotion-serving", "app.kubernetes.io/instance": spec.name}


def cpu_cores(quantity: str) -> int:
    """Whole cores in a Kubernetes CPU quantity ("2", "1500m", "0.5"), at least 1."""
    value = float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)
    return max(1, int(value))


def _container(spec: K8sSpec) -> dict:
    # inference threads = the cores the limit gives the pod (serving/settings.py: SERVE_THREADS)
    threads = (
        []
        if "SERVE_THREADS" in spec.env
        else [{"name": "SERVE_THREADS", "value": str(cpu_cores(spec.cpu_limit))}]
    )
    env = [
        {"name": "SERVE_MODEL_URI", "value": spec.model_uri},
        {"name": "SERVE_HOST", "value": "0.0.0.0"},
        {"name": "SERVE_PORT", "value": str(CONTAINER_PORT)},
        {"name": "SERVE_CACHE_DIR", "value": "/cache/serving"},
        {"name": "HF_HOME", "value": "/cache/huggingface"},
        {"name": "HOME", "value": "/tmp"},
        {"name": "TMPDIR", "value": "/tmp"},
        *threads,
        *({"name": k, "value": v} for k, v in sorted(spec.env.items())),
    ]
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        env.append({"name": key, "valueFrom": {"secretKeyRef": {"name": spec.secret_name, "key": key}}})
    probe = {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 5, "timeoutSeconds": 3}
    return {
        "name": "server",
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", "serving"],
        "ports": [{"name": "http", "containerPort": CONTAINER_PORT, "protocol": "TCP"}],
        "env": env,
        "readinessProbe": {**probe, "failureThreshold": 3},
        "startupProbe": {**probe, "httpGet": {"path": "/health", "port": "http"}, "failureThreshold": 30},
        "livenessProbe": {
            "httpGet": {"path": "/health", "port": "http"},
            "periodSeconds": 10,
            "timeoutSeconds": 3,
            "failureThreshold": 3,
        },
        "resources": {
            "requests": {"cpu": spec.cpu_request, "memory": spec.memory_request},
            "limits": {"cpu": spec.cpu_limit, "memory": spec.memory_limit},
        },
        "securityContext": container_security_context(read_only_root=True),
        "volumeMounts": [{"name": "cache", "mountPath": "/cache"}, {"name": "tmp", "mountPath": "/tmp"}],
    }


def render_deployment(spec: K8sSpec) -> dict:
    annotations = {MODEL_VERSION_ANNOTATION: spec.model_version, MODEL_URI_ANNOTATION: spec.model_uri}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": spec.name,
            "namespace": spec.namespace,
            "labels": {**labels(spec), "app.kubernetes.io/component": "inference"},
            "annotations": {
                **annotations,
                "kubernetes.io/change-cause": f"model version {spec.model_version}",
            },
        },
        "spec": {
            "replicas": spec.replicas,
            "revisionHistoryLimit": 5,
            "progressDeadlineSeconds": spec.progress_deadline_s,
            "selector": {"matchLabels": labels(spec)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": labels(spec), "annotations": annotations},
                "spec": {
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": pod_security_context(),
                    "containers": [_container(spec)],
                    "volumes": [
                        {"name": "cache", "emptyDir": {"sizeLimit": "2Gi"}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": "512Mi"}},
                    ],
                },
            },
        },
    }


def render_service(spec: K8sSpec) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": spec.name, "namespace": spec.namespace, "labels": labels(spec)},
        "spec": {
            "type": "ClusterIP",
            "selector": labels(spec),
            "ports": [{"name": "http", "port": CONTAINER_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def render(spec: K8sSpec) -> list[dict]:
    """The manifests in apply order: the Service first, then the Deployment."""
    return [render_service(spec), render_deployment(spec)]


def endpoint_url(spec: K8sSpec) -> str:
    return f"http://{spec.name}.{spec.namespace}.svc.cluster.local:{CONTAINER_PORT}"
