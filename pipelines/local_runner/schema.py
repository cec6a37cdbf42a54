"""Validate a Workflow/WorkflowTemplate document against the saved Argo JSON schema.

Prefers the project's strict validator (`pipelines.argo_schema`) when it is present; otherwise a
minimal equivalent: validate against the kind's definition (not the root oneOf, whose error says
nothing), with IntOrString accepting ints and `additionalProperties: false` added so typos fail.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path

from pipelines.local_runner.errors import WorkflowError

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO_ROOT.parent / "shared" / "schemas" / "argo-workflows" / "schema.json"
KINDS = ("Workflow", "WorkflowTemplate", "ClusterWorkflowTemplate")


@functools.lru_cache(maxsize=4)
def _fallback_validator(kind: str):
    from jsonschema import Draft202012Validator

    if not SCHEMA_PATH.is_file():
        return None
    base = json.loads(SCHEMA_PATH.read_text())
    defs = copy.deepcopy(base["definitions"])
    defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"] = {"type": ["integer", "string"]}
    for definition in defs.values():
        if definition.get("type") == "object" and "properties" in definition:
            definition.setdefault("additionalProperties", False)
    return Draft202012Validator(
        {
            "$schema": base["$schema"],
            "definitions": defs,
            "$ref": f"#/definitions/io.argoproj.workflow.v1alpha1.{kind}",
        }
    )


def _project_errors(doc: dict) -> list[str] | None:
    """Errors from pipelines.argo_schema if that module offers a validator; None when absent."""
    try:
        from pipelines import argo_schema  # type: ignore[attr-defined]
    except ImportError:
        return None
    for name in ("workflow_errors", "validation_errors", "schema_errors"):
        fn = getattr(argo_schema, name, None)
        if callable(fn):
            return [str(e) for e in fn(doc)]
    return None


def _fallback_errors(doc: dict) -> list[str]:
    validator = _fallback_validator(doc.get("kind", ""))
    if validator is None:
        return []
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    return [f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}" for e in errors]


def validate_document(doc: object, source: str) -> None:
    """Raise WorkflowError listing the schema errors of `doc` (read from `source`)."""
    if not isinstance(doc, dict):
        raise WorkflowError(f"{source}: not a YAML mapping")
    kind = doc.get("kind")
    if kind not in KINDS:
        raise WorkflowError(f"{source}: kind {kind!r} is not one of {', '.join(KINDS)}")
    errors = _project_errors(doc)
    if errors is None:
        errors = _fallback_errors(doc)
    if errors:
        shown = "\n  ".join(errors[:10])
        more = f"\n  ... and {len(errors) - 10} more" if len(errors) > 10 else ""
        raise WorkflowError(f"{source} is not a valid Argo {kind}:\n  {shown}{more}")
