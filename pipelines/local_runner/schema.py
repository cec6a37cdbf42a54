"""Validate a Workflow/WorkflowTemplate document against the saved Argo JSON schema (strict).

The validator itself is the project's (`pipelines.argo_schema`), shared with the compile step's
golden test, so what runs locally is checked exactly like what is submitted.
"""

from __future__ import annotations

from pipelines.argo_schema import workflow_errors
from pipelines.local_runner.errors import WorkflowError

RUNNABLE_KINDS = ("Workflow", "WorkflowTemplate", "ClusterWorkflowTemplate")
SHOWN_ERRORS = 10


def validate_document(doc: object, source: str) -> None:
    """Raise WorkflowError listing the schema errors of `doc` (read from `source`)."""
    if not isinstance(doc, dict):
        raise WorkflowError(f"{source}: not a YAML mapping")
    kind = doc.get("kind")
    if kind not in RUNNABLE_KINDS:
        raise WorkflowError(f"{source}: kind {kind!r} is not one of {', '.join(RUNNABLE_KINDS)}")
    errors = workflow_errors(doc)
    if errors:
        shown = "\n  ".join(errors[:SHOWN_ERRORS])
        more = f"\n  ... and {len(errors) - SHOWN_ERRORS} more" if len(errors) > SHOWN_ERRORS else ""
        raise WorkflowError(f"{source} is not a valid Argo {kind}:\n  {shown}{more}")
