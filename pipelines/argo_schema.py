"""Offline validators: Argo's JSON schema (v4.1.2) and KubeRay's RayJob and RayService CRDs, strict.

- Argo: validate against the kind's definition, not the root `oneOf` (whose only error says nothing);
  `IntOrString` accepts ints as Argo itself does (the saved schema says string only); and
  `additionalProperties: false` is added to every object definition so typos such as
  `retryStrategy.limt` fail instead of passing silently.
- KubeRay (RayJob, RayService): the CRD's v1 (storage) `openAPIV3Schema`, strict the same way
  except where the CRD marks `x-kubernetes-preserve-unknown-fields`. The CRDs' CEL rules
  (`x-kubernetes-validations`) and the operator's own checks are not run here.

The schemas ship with the repo (pipelines/schemas/, verbatim copies; see its README); set
EMOTION_SCHEMAS_DIR to validate against another copy with the same layout.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft7Validator, Draft202012Validator

from shared.environment import ProductEnvironment

REPO_ROOT = Path(__file__).resolve().parent.parent
VENDORED_SCHEMAS = Path(__file__).resolve().parent / "schemas"
ARGO_KINDS = ("Workflow", "WorkflowTemplate", "ClusterWorkflowTemplate", "CronWorkflow")
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"


def schemas_dir() -> Path:
    return Path(ProductEnvironment().schemas_dir or VENDORED_SCHEMAS)


def _strict_definitions(definitions: dict[str, Any]) -> dict[str, Any]:
    defs = copy.deepcopy(definitions)
    defs[INT_OR_STRING] = {"type": ["integer", "string"]}
    for definition in defs.values():
        if definition.get("type") == "object" and "properties" in definition:
            definition.setdefault("additionalProperties", False)
    return defs


@functools.lru_cache(maxsize=1)
def _argo_schema() -> dict[str, Any]:
    return json.loads((schemas_dir() / "argo-workflows" / "schema.json").read_text())


@functools.lru_cache(maxsize=1)
def swagger() -> dict[str, Any]:
    """Argo server's OpenAPI (Swagger 2.0) spec, as saved."""
    return json.loads((schemas_dir() / "argo-workflows" / "swagger.json").read_text())


@functools.lru_cache(maxsize=8)
def argo_validator(kind: str, strict: bool = True) -> Draft202012Validator:
    base = _argo_schema()
    defs = _strict_definitions(base["definitions"]) if strict else base["definitions"]
    return Draft202012Validator(
        {
            "$schema": base["$schema"],
            "definitions": defs,
            "$ref": f"#/definitions/io.argoproj.workflow.v1alpha1.{kind}",
        }
    )


@functools.lru_cache(maxsize=16)
def swagger_validator(definition: str) -> Draft7Validator:
    """A strict validator for one swagger definition (a request body such as WorkflowCreateRequest)."""
    spec = swagger()
    defs = _strict_definitions(spec["definitions"])
    return Draft7Validator({"definitions": defs, "$ref": f"#/definitions/{definition}"})


def _format(errors) -> list[str]:
    ordered = sorted(errors, key=lambda e: [str(p) for p in e.absolute_path])
    return [f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}" for e in ordered]


def workflow_errors(doc: dict[str, Any]) -> list[str]:
    """Schema errors of an Argo document (its `kind` picks the definition); [] when valid."""
    kind = doc.get("kind") if isinstance(doc, dict) else None
    if kind not in ARGO_KINDS:
        return [f"kind: {kind!r} is not one of {', '.join(ARGO_KINDS)}"]
    return _format(argo_validator(kind).iter_errors(doc))


def _strict_crd(node: Any) -> Any:
    if isinstance(node, dict):
        node = {k: _strict_crd(v) for k, v in node.items()}
        if (
            node.get("type") == "object"
            and "properties" in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node.setdefault("additionalProperties", False)
        return node
    if isinstance(node, list):
        return [_strict_crd(v) for v in node]
    return node


# The vendored KubeRay CRD of each kind (pipelines/schemas/kuberay/, one KubeRay release).
KUBERAY_CRDS = {"RayJob": "ray.io_rayjobs.yaml", "RayService": "ray.io_rayservices.yaml"}
KUBERAY_API_VERSION = "ray.io/v1"


@functools.lru_cache(maxsize=len(KUBERAY_CRDS))
def kuberay_validator(kind: str) -> Draft7Validator:
    """A strict validator for a KubeRay kind: the schema of its CRD's served storage version (v1)."""
    crd = yaml.safe_load((schemas_dir() / "kuberay" / KUBERAY_CRDS[kind]).read_text())
    version = next(v for v in crd["spec"]["versions"] if v.get("served") and v.get("storage"))
    if f"{crd['spec']['group']}/{version['name']}" != KUBERAY_API_VERSION:  # another KubeRay release
        raise ValueError(f"{KUBERAY_CRDS[kind]} stores {version['name']}, not {KUBERAY_API_VERSION}")
    return Draft7Validator(_strict_crd(version["schema"]["openAPIV3Schema"]))


def kuberay_errors(manifest: dict[str, Any], kind: str) -> list[str]:
    """Errors of a `kind` manifest (RayJob, RayService) against the KubeRay v1 CRD (strict); [] when valid."""
    errors = []
    if manifest.get("apiVersion") != KUBERAY_API_VERSION or manifest.get("kind") != kind:
        errors.append(
            f"<root>: expected apiVersion {KUBERAY_API_VERSION}, kind {kind}; got "
            f"{manifest.get('apiVersion')!r}, {manifest.get('kind')!r}"
        )
    return errors + _format(kuberay_validator(kind).iter_errors(manifest))


def rayjob_validator() -> Draft7Validator:
    """The RayJob CRD's validator (`kuberay_validator("RayJob")`)."""
    return kuberay_validator("RayJob")


def rayjob_errors(manifest: dict[str, Any]) -> list[str]:
    """Errors of a RayJob manifest against the KubeRay v1 CRD (strict); [] when valid."""
    return kuberay_errors(manifest, "RayJob")


def rayservice_errors(manifest: dict[str, Any]) -> list[str]:
    """Errors of a RayService manifest against the KubeRay v1 CRD (strict); [] when valid."""
    return kuberay_errors(manifest, "RayService")
