"""The DAG's edges, conditions, paths and per-step settings, read from the compiled Workflow."""

from __future__ import annotations

import re

import pytest
from argo_docs import tasks_of, templates_of

from pipelines import parameters
from pipelines.contract_templates import RETRY_EXPRESSION
from pipelines.emotion_hpo import build_workflow, to_manifest

EXPECTED_DEPENDS = {
    "cache-keys": None,
    "dvc-fetch": "cache-keys",
    "tokenize-to-parquet": "dvc-fetch",
    "hpo": "tokenize-to-parquet",
    "hpo-rayjob-manifest": "tokenize-to-parquet",
    "hpo-rayjob": "hpo-rayjob-manifest",
    "hpo-rayjob-result": "hpo-rayjob",
    # plain names: a Skipped branch satisfies them, so only the branch that ran matters
    "register": "hpo && hpo-rayjob-result",
    "deploy": "register",
}
IN_POD = "'{{workflow.parameters.hpo-runner}}' == 'in-pod'"
RAYJOB = "'{{workflow.parameters.hpo-runner}}' == 'rayjob'"
PLACEHOLDER = re.compile(r"\{\{([^{}]+)\}\}")


def test_edges(workflow):
    tasks = tasks_of(workflow)
    assert {name: t.get("depends") for name, t in tasks.items()} == EXPECTED_DEPENDS


def test_conditions(workflow):
    tasks = tasks_of(workflow)
    assert tasks["hpo"]["when"] == IN_POD
    for name in ("hpo-rayjob-manifest", "hpo-rayjob", "hpo-rayjob-result"):
        assert tasks[name]["when"] == RAYJOB
    assert tasks["deploy"]["when"] == "{{tasks.register.outputs.parameters.promoted}} == true"
    for name in ("cache-keys", "dvc-fetch", "tokenize-to-parquet", "register"):
        assert "when" not in tasks[name]


def test_every_parameter_declared_with_default_and_description(workflow, template):
    for doc in (workflow, template):
        declared = doc["spec"]["arguments"]["parameters"]
        assert [p["name"] for p in declared] == list(parameters.NAMES)
        for p in declared:
            spec = parameters.BY_NAME[p["name"]]
            assert p["value"] == spec.default and p["description"]
            assert p.get("enum") == (list(spec.enum) if spec.enum else None)
            if spec.enum:
                assert spec.default in spec.enum


def test_thin_run_passes_every_parameter(template_run):
    passed = {p["name"]: p["value"] for p in template_run["spec"]["arguments"]["parameters"]}
    assert passed == parameters.defaults()
    assert template_run["metadata"]["labels"]["workflows.argoproj.io/workflow-template"] == "emotion-hpo"


def test_overrides_are_validated():
    doc = to_manifest(build_workflow({"num-samples": "2", "hpo-runner": "rayjob"}))
    values = {p["name"]: p["value"] for p in doc["spec"]["arguments"]["parameters"]}
    assert values["num-samples"] == "2" and values["hpo-runner"] == "rayjob"
    with pytest.raises(parameters.ParameterError, match="valid parameters: data-version"):
        build_workflow({"num_samples": "2"})
    with pytest.raises(parameters.ParameterError, match="one of in-pod, rayjob"):
        build_workflow({"hpo-runner": "ssh"})


def test_every_reference_resolves(workflow):
    """Each {{...}} names a declared workflow parameter, an input/output of its template, or a task output."""
    names = set(parameters.NAMES)
    templates = templates_of(workflow)
    tasks = tasks_of(workflow)
    for template in templates.values():
        inputs = template.get("inputs", {})
        outputs = template.get("outputs", {})
        allowed = {"workflow.uid", "workflow.name"} | {f"workflow.parameters.{n}" for n in names}
        allowed |= {f"inputs.parameters.{p['name']}" for p in inputs.get("parameters", [])}
        allowed |= {f"inputs.artifacts.{a['name']}.path" for a in inputs.get("artifacts", [])}
        allowed |= {f"outputs.artifacts.{a['name']}.path" for a in outputs.get("artifacts", [])}
        for task in tasks.values():
            t = templates[task["template"]]
            allowed |= {
                f"tasks.{task['name']}.outputs.parameters.{p['name']}"
                for p in t.get("outputs", {}).get("parameters", [])
            }
            allowed |= {
                f"tasks.{task['name']}.outputs.artifacts.{a['name']}"
                for a in t.get("outputs", {}).get("artifacts", [])
            }
        for ref in PLACEHOLDER.findall(str(template)):
            assert ref in allowed, f"{template['name']}: unresolvable {{{{{ref}}}}}"


def test_args_reference_paths_only_through_artifacts(workflow):
    """File paths in args are artifact path placeholders, so the local runner can map them."""
    for template in templates_of(workflow).values():
        container = template.get("container")
        if not container:
            continue
        for arg in container["args"]:
            assert not arg.startswith("/"), f"{template['name']}: literal path {arg}"
        assert container["args"][-2:] == ["--result-dir", "{{outputs.artifacts.result.path}}"] or (
            template["name"] == "hpo-rayjob-manifest"
        )


def test_result_outputs_read_result_files(workflow):
    for name, template in templates_of(workflow).items():
        outputs = template.get("outputs", {})
        for p in outputs.get("parameters", []):
            if "path" in p.get("valueFrom", {}):
                assert p["valueFrom"]["path"] == f"/tmp/result/{p['name']}"
                assert {"name": "result", "path": "/tmp/result"} in outputs["artifacts"], name


def test_step_commands_follow_the_contracts(workflow):
    t = templates_of(workflow)
    assert t["dvc-fetch"]["container"]["command"] == ["python", "-m", "steps.dvc_fetch"]
    assert t["hpo"]["container"]["command"] == ["python", "-m", "steps.hpo"]
    assert t["hpo"]["container"]["args"][0] == "--tokenized-dir"
    assert t["hpo-rayjob-result"]["container"]["args"][:3] == ["result", "--workflow-uid", "{{workflow.uid}}"]
    register_args = t["register"]["container"]["args"]
    assert register_args[register_args.index("--workflow-uid") + 1] == "{{workflow.uid}}"
    deploy_args = t["deploy"]["container"]["args"]
    # pinned: the version this workflow's register step produced, never the moving alias
    assert deploy_args[:3] == ["rollout", "--model-uri", "{{inputs.parameters.model-uri}}"]
    dag = {
        task["name"]: task
        for task in next(x for x in workflow["spec"]["templates"] if "dag" in x)["dag"]["tasks"]
    }
    deploy_params = {p["name"]: p["value"] for p in dag["deploy"]["arguments"]["parameters"]}
    assert deploy_params == {"model-uri": "{{tasks.register.outputs.parameters.model-uri}}"}
    assert "champion" not in " ".join(deploy_args)
    hpo_args = t["hpo"]["container"]["args"]
    assert hpo_args[hpo_args.index("--workflow-uid") + 1] == "{{workflow.uid}}"
    assert hpo_args[hpo_args.index("--storage-dir") + 1] == "{{workflow.parameters.storage-dir}}"
    assert "emotion-hpo-serving" in deploy_args[deploy_args.index("--image") + 1]
    space = next(a for a in t["hpo"]["inputs"]["artifacts"] if a["name"] == "search-space")
    assert space["raw"] == {"data": "{{workflow.parameters.search-space}}"}


def test_env_lineage_and_secrets_by_reference(workflow):
    for template in templates_of(workflow).values():
        if "container" not in template:
            continue
        env = {e["name"]: e for e in template["container"]["env"]}
        assert env["ARGO_WORKFLOW_UID"]["value"] == "{{workflow.uid}}"
        assert env["DOCKER_IMAGE_TAG"]["value"] == "{{workflow.parameters.image-tag}}"
        assert env["MLFLOW_TRACKING_URI"]["value"] == "{{workflow.parameters.mlflow-tracking-uri}}"
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            ref = env[key]["valueFrom"]["secretKeyRef"]
            assert ref["optional"] is True and "value" not in env[key]
        assert env["MLFLOW_S3_ENDPOINT_URL"]["valueFrom"]["configMapKeyRef"]["optional"] is True


def test_memoization_keys_come_from_the_cache_keys_task(workflow):
    t = templates_of(workflow)
    tasks = tasks_of(workflow)
    for name, output in (("dvc-fetch", "dvc-fetch"), ("tokenize-to-parquet", "tokenize")):
        assert t[name]["memoize"]["key"] == "{{inputs.parameters.cache-key}}"
        assert t[name]["memoize"]["cache"]["configMap"]["name"] == "emotion-hpo-memo"
        arg = next(p for p in tasks[name]["arguments"]["parameters"] if p["name"] == "cache-key")
        assert arg["value"] == f"{{{{tasks.cache-keys.outputs.parameters.{output}}}}}"
    assert "memoize" not in t["hpo"] and "memoize" not in t["register"]


def test_resources_retries_and_deadlines(workflow):
    t = templates_of(workflow)
    hpo = t["hpo"]
    assert hpo["container"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"name": "dshm", "mountPath": "/dev/shm"} in hpo["container"]["volumeMounts"]
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}} in hpo["volumes"]
    # hours of search: retried on a pod-level error or a transient fault (exit 75), never on a failed search
    assert hpo["retryStrategy"]["expression"] == RETRY_EXPRESSION
    assert workflow["spec"]["activeDeadlineSeconds"] == 43200
    for name, template in t.items():
        assert template.get("activeDeadlineSeconds") or name == "main", name
        retry = template.get("retryStrategy")
        if retry and retry["retryPolicy"] == "Always":
            assert retry["expression"] == RETRY_EXPRESSION  # the failure policy: exit 75 or a pod error
            assert retry["backoff"]["factor"] == 2


def test_no_secret_values_in_yaml(workflow, template):
    text = str(workflow) + str(template)
    assert "secretKeyRef" in text
    assert not re.search(r"AKIA[0-9A-Z]{16}", text)
    assert "password" not in text.lower()
