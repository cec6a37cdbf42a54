"""Refuse, before anything runs, every workflow field the local runner does not implement.

The document is walked along the Argo JSON schema: each field is looked up as (definition, property)
and must be in `IMPLEMENTED` (run with Argo's semantics) or `NO_LOCAL_EFFECT` (cluster placement,
pod metadata and storage settings that change nothing a local process computes; their subtree is
not walked). Anything else - including fields a later Argo version adds - is refused with one
line naming the field and where it is. `tests/runner/test_refusals.py` walks the whole schema.

Definitions are named without the `io.argoproj.workflow.v1alpha1.` prefix; Kubernetes ones as
`k8s.<Name>`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pipelines.local_runner.errors import UnsupportedFeature

ARGO = "io.argoproj.workflow.v1alpha1."
_ARTIFACT_STORES = {
    "s3", "gcs", "http", "git", "artifactory", "hdfs", "oss", "azure", "plugin", "archive",
    "archiveLogs", "artifactGC", "deleted", "recurseMode",
}  # fmt: skip

IMPLEMENTED: dict[str, set[str]] = {
    "Workflow": {"apiVersion", "kind", "metadata", "spec"},
    "WorkflowTemplate": {"apiVersion", "kind", "metadata", "spec"},
    "ClusterWorkflowTemplate": {"apiVersion", "kind", "metadata", "spec"},
    "WorkflowSpec": {
        "entrypoint", "arguments", "templates", "onExit", "hooks", "parallelism",
        "activeDeadlineSeconds", "volumes", "retryStrategy", "podSpecPatch", "templateDefaults",
        "synchronization",  # held by the run from start to end, across a local dir's runs (sync.py)
    },
    "Template": {
        "name", "container", "script", "dag", "steps", "inputs", "outputs", "retryStrategy",
        "activeDeadlineSeconds", "timeout", "memoize", "volumes", "initContainers", "sidecars",
        "podSpecPatch",  # only resources (preflight.py)
        "parallelism",
        "synchronization",  # mutexes and semaphores as file locks shared by a local dir's runs (sync.py)
    },
    "Synchronization": {"mutexes", "semaphores"},
    "Mutex": {"name"},
    "SemaphoreRef": {"configMapKeyRef"},
    "k8s.Container": {"name", "image", "command", "args", "env", "workingDir", "volumeMounts"},
    "ScriptTemplate": {"name", "image", "command", "args", "env", "workingDir", "volumeMounts", "source"},
    "UserContainer": {
        "name", "image", "command", "args", "env", "workingDir", "volumeMounts",
        "mirrorVolumeMounts",  # every container of a step shares its file system locally
    },
    "k8s.EnvVar": {"name", "value", "valueFrom"},
    "k8s.EnvVarSource": {"secretKeyRef", "configMapKeyRef"},
    "k8s.SecretKeySelector": {"name", "key", "optional"},
    "k8s.ConfigMapKeySelector": {"name", "key", "optional"},
    "k8s.VolumeMount": {"name", "mountPath", "subPath"},
    "k8s.Volume": {"name", "emptyDir", "secret", "configMap", "persistentVolumeClaim"},
    "k8s.PersistentVolumeClaimVolumeSource": {"claimName"},
    "k8s.SecretVolumeSource": {"secretName", "optional"},
    "k8s.ConfigMapVolumeSource": {"name", "optional"},
    "Inputs": {"parameters", "artifacts"},
    "Outputs": {"parameters", "artifacts"},
    "Arguments": {"parameters", "artifacts"},
    "Parameter": {"name", "value", "default", "valueFrom", "enum", "description"},
    "ValueFrom": {"path", "default", "expression", "parameter", "configMapKeyRef"},
    "Artifact": {"name", "path", "from", "fromExpression", "raw", "optional"},
    "RawArtifact": {"data"},
    "DAGTemplate": {"tasks", "target", "failFast"},
    "DAGTask": {
        "name", "template", "inline", "arguments", "depends", "dependencies", "when", "withItems",
        "withParam", "withSequence", "continueOn", "hooks", "onExit",
    },
    "WorkflowStep": {
        "name", "template", "inline", "arguments", "when", "withItems", "withParam", "withSequence",
        "continueOn", "hooks", "onExit",
    },
    "ContinueOn": {"failed", "error"},
    "Sequence": {"count", "start", "end", "format"},
    "LifecycleHook": {"template", "arguments", "expression"},
    "RetryStrategy": {"limit", "retryPolicy", "expression", "backoff"},
    "Backoff": {"duration", "factor", "maxDuration", "cap"},
    "Memoize": {"key", "maxAge", "cache"},
}  # fmt: skip

# Not walked further: they place or label pods, size them, or say where a cluster stores things.
NO_LOCAL_EFFECT: dict[str, set[str]] = {
    "k8s.ObjectMeta": {
        "name", "generateName", "namespace", "labels", "annotations", "uid", "resourceVersion",
        "creationTimestamp",
    },
    "WorkflowSpec": {
        "serviceAccountName", "podGC", "ttlStrategy", "podDisruptionBudget", "priority", "podMetadata",
        "podPriorityClassName", "nodeSelector", "tolerations", "affinity", "imagePullSecrets",
        "securityContext", "artifactRepositoryRef", "archiveLogs", "workflowMetadata", "podResources",
        "schedulerName", "dnsPolicy", "dnsConfig", "automountServiceAccountToken", "executor",
        "artifactGC", "volumeClaimGC",
        "volumeClaimTemplates",  # run: each claim is a folder of the run; its storage spec changes nothing
    },
    "Template": {
        "metadata", "nodeSelector", "tolerations", "affinity", "serviceAccountName", "podResources",
        "archiveLocation", "priorityClassName", "schedulerName", "securityContext",
        "automountServiceAccountToken", "executor", "annotations", "resourceClaims",
    },
    "k8s.Container": {"resources", "imagePullPolicy", "securityContext", "ports", "terminationMessagePath",
                      "terminationMessagePolicy"},
    "ScriptTemplate": {"resources", "imagePullPolicy", "securityContext", "ports", "terminationMessagePath",
                       "terminationMessagePolicy"},
    "UserContainer": {"resources", "imagePullPolicy", "securityContext", "ports"},
    "k8s.EmptyDirVolumeSource": {"medium", "sizeLimit"},
    "k8s.Volume": set(),
    "k8s.VolumeMount": {"readOnly"},
    "k8s.PersistentVolumeClaimVolumeSource": {"readOnly"},
    "k8s.SecretVolumeSource": {"defaultMode"},
    "k8s.ConfigMapVolumeSource": {"defaultMode"},
    "Cache": {"configMap"},  # where a cluster keeps memoized entries; locally .local/cache/
    "RetryStrategy": {"affinity"},  # node anti-affinity between attempts: there is one node
    "Artifact": {"archive", "archiveLogs", "artifactGC", "deleted"},
    "Parameter": set(),
}  # fmt: skip

# Template kinds that cannot run locally: refused by preflight.py when a run would reach one (so a
# workflow can keep, say, a cluster-only resource step behind a `when` the local run makes false).
REFUSED_WHEN_REACHED = {"Template": {"resource", "suspend", "http", "plugin", "containerSet", "data"}}

# Artifact storage fields are where a cluster would upload an *output*; locally outputs stay in the
# run folder. On an input or argument they name where to fetch from, which is not done locally.
OUTPUT_ONLY = {"Artifact": _ARTIFACT_STORES}


def short(definition: str) -> str:
    if definition.startswith(ARGO):
        return definition[len(ARGO) :]
    return "k8s." + definition.rsplit(".", 1)[1]


def _ref(schema: dict) -> str | None:
    ref = schema.get("$ref")
    return ref.rsplit("/", 1)[1] if ref else None


def child_definitions(schema: dict) -> tuple[str | None, str]:
    """(definition, shape) a property value holds: shape is one|list|map|list-of-list."""
    if _ref(schema):
        return _ref(schema), "one"
    if schema.get("type") == "array":
        items = schema.get("items") or {}
        if _ref(items):
            return _ref(items), "list"
    if schema.get("type") == "object" and isinstance(schema.get("additionalProperties"), dict):
        return _ref(schema["additionalProperties"]), "map"
    return None, "leaf"


def allowed(definition: str, prop: str, path: str) -> str | None:
    """'implemented', 'no-effect', or None (refused) for a field at `path`."""
    name = short(definition)
    if prop in OUTPUT_ONLY.get(name, set()):
        return "no-effect" if ".outputs." in path + "." else None
    if prop in IMPLEMENTED.get(name, set()):
        return "implemented"
    if prop in REFUSED_WHEN_REACHED.get(name, set()):
        return "when-reached"
    if prop in NO_LOCAL_EFFECT.get(name, set()):
        return "no-effect"
    return None


def walk(doc: Any, definition: str, definitions: dict, path: str = "") -> Iterator[tuple[str, str, str]]:
    """Yield (path, definition, property) for every refused field of `doc`."""
    schema = definitions.get(definition) or {}
    if schema.get("type") == "array" and _ref(schema.get("items") or {}):  # e.g. ParallelSteps
        for i, item in enumerate(doc if isinstance(doc, list) else []):
            yield from walk(item, _ref(schema["items"]), definitions, f"{path}[{i}]")
        return
    props = schema.get("properties")
    if not isinstance(doc, dict) or not props:
        return
    if set(doc) & REFUSED_WHEN_REACHED.get(short(definition), set()):
        return  # a resource/http/... template: refused as a whole if a run reaches it
    for key, value in doc.items():
        here = f"{path}.{key}" if path else key
        if key not in props:
            continue  # the schema check reports unknown fields
        verdict = allowed(definition, key, here)
        if verdict is None:
            yield here, definition, key
            continue
        if verdict in ("no-effect", "when-reached"):
            continue
        sub, shape = child_definitions(props[key])
        if sub is None:
            continue
        if shape == "one":
            yield from walk(value, sub, definitions, here)
        elif shape == "list" and isinstance(value, list):
            for i, item in enumerate(value):
                yield from walk(item, sub, definitions, f"{here}[{i}]")
        elif shape == "map" and isinstance(value, dict):
            for k, item in value.items():
                yield from walk(item, sub, definitions, f"{here}.{k}")


def refused_fields(doc: dict, definitions: dict) -> list[str]:
    kind = doc.get("kind", "Workflow")
    return [
        f"{path} ({short(definition)}.{prop}) is not supported by the local runner"
        for path, definition, prop in walk(doc, ARGO + kind, definitions)
    ]


def check_fields(doc: dict, definitions: dict, source: str) -> None:
    refused = refused_fields(doc, definitions)
    if refused:
        more = f" (and {len(refused) - 1} more: {'; '.join(refused[1:4])})" if len(refused) > 1 else ""
        raise UnsupportedFeature(f"{source}: {refused[0]}{more}")
