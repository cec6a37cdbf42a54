"""Kubernetes target: manifests (schema, security policy), RBAC, apply/wait/rollback against a FAKE API."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from kubernetes import client

from shared.errors import StepError
from shared.settings import Settings
from steps.deploy.contract import DeployInput, Target
from steps.deploy.k8s_deploy import resolve_model_version, rollout_kubernetes
from steps.deploy.k8s_render import MODEL_VERSION_ANNOTATION, K8sSpec, render
from tests.deploy.fake_kube_api import FakeKubeApi

K8S_VERSION = "1.33.0"
RBAC = Path(__file__).resolve().parents[2] / "steps" / "deploy" / "k8s" / "rbac.yaml"


def _spec(**kw) -> K8sSpec:
    base = dict(
        name="emotion-serving",
        namespace="emotion",
        image="ghcr.io/acme/emotion-serving:1.2.3",
        model_uri="models:/emotion-classifier/4",
        model_version="4",
        env={"MLFLOW_TRACKING_URI": "http://mlflow.mlflow:5000"},
    )
    return K8sSpec(**{**base, **kw})


def _by_kind(manifests: list[dict]) -> dict[str, dict]:
    return {m["kind"]: m for m in manifests}


def test_manifests_pass_strict_schema_validation():
    for manifest in render(_spec()):
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)


def test_strict_validation_catches_a_misspelt_field():
    deployment = _by_kind(render(_spec()))["Deployment"]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_security_policy():
    pod = _by_kind(render(_spec()))["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    for container in pod["containers"]:
        sc = container["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] != 0
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["privileged"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert "add" not in sc["capabilities"]
        assert set(container["resources"]["requests"]) == {"cpu", "memory"}
        assert set(container["resources"]["limits"]) == {"cpu", "memory"}
        # writable paths are emptyDirs (the root filesystem is read-only)
        volumes = {v["name"]: v for v in pod["volumes"]}
        for mount in container["volumeMounts"]:
            assert "emptyDir" in volumes[mount["name"]]


def test_probes_rollout_strategy_and_secret_references():
    deployment = _by_kind(render(_spec()))["Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    env = {e["name"]: e for e in container["env"]}
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert "value" not in env[key]
        assert env[key]["valueFrom"]["secretKeyRef"] == {"name": "emotion-mlflow-credentials", "key": key}
    assert env["MLFLOW_TRACKING_URI"]["value"] == "http://mlflow.mlflow:5000"
    assert env["SERVE_MODEL_URI"]["value"] == "models:/emotion-classifier/4"
    service = _by_kind(render(_spec()))["Service"]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_a_new_model_version_changes_the_pod_template():
    old = _by_kind(render(_spec()))["Deployment"]["spec"]["template"]
    new = _by_kind(render(_spec(model_uri="models:/emotion-classifier/5", model_version="5")))["Deployment"]
    assert new["spec"]["template"]["metadata"]["annotations"][MODEL_VERSION_ANNOTATION] == "5"
    assert old != new["spec"]["template"]


def test_rbac_is_valid_and_minimal():
    docs = [d for d in yaml.safe_load_all(RBAC.read_text()) if d]
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    kinds = _by_kind(docs)
    assert set(kinds) == {"ServiceAccount", "Role", "RoleBinding"}
    rules = {
        (r["apiGroups"][0], res): set(r["verbs"]) for r in kinds["Role"]["rules"] for res in r["resources"]
    }
    assert rules == {
        ("apps", "deployments"): {"get", "create", "patch"},
        ("", "services"): {"create", "patch"},
        ("apps", "replicasets"): {"list"},
        ("ray.io", "rayservices"): {"get", "create", "patch"},
        ("argoproj.io", "workflowtaskresults"): {"create", "patch"},
    }
    assert kinds["RoleBinding"]["roleRef"]["name"] == kinds["Role"]["metadata"]["name"]
    assert kinds["RoleBinding"]["subjects"][0]["name"] == kinds["ServiceAccount"]["metadata"]["name"]


def test_model_version_resolution_without_registry_lookup():
    assert resolve_model_version("models:/emotion-classifier/7", None) == (
        "models:/emotion-classifier/7",
        "7",
    )
    uri, version = resolve_model_version("runs:/abc123/model", None)
    assert uri == "runs:/abc123/model" and version.startswith("uri-")
    assert resolve_model_version("runs:/other/model", None)[1] != version


# ---- apply / wait / rollback against the FAKE Kubernetes API ---------------------------------


def _api(fake: FakeKubeApi) -> client.ApiClient:
    configuration = client.Configuration()
    configuration.host = fake.url
    return client.ApiClient(configuration)


def _deploy(fake: FakeKubeApi, version: str, timeout_s: float = 5.0):
    inp = DeployInput(
        model_uri=f"models:/emotion-classifier/{version}",
        deploy_target=Target.kubernetes,
        image="ghcr.io/acme/emotion-serving:1.2.3",
        deploy_namespace="emotion",
        rollout_timeout_s=timeout_s,
    )
    return rollout_kubernetes(
        inp, Settings(mlflow_tracking_uri="http://mlflow:5000"), _api(fake), poll_s=0.05
    )


def _served_version(fake: FakeKubeApi) -> str:
    dep = fake.deployments[("emotion", "emotion-serving")]
    return dep["spec"]["template"]["metadata"]["annotations"][MODEL_VERSION_ANNOTATION]


def test_fake_api_rollout_uses_server_side_apply_and_waits():
    with FakeKubeApi(ticks_to_ready=3) as fake:
        result = _deploy(fake, "1")
        assert result.served_version == "1"
        assert result.endpoint_url == "http://emotion-serving.emotion.svc.cluster.local:8000"
        result = _deploy(fake, "2")
        assert result.served_version == "2" and result.model_uri == "models:/emotion-classifier/2"
        dep = fake.deployments[("emotion", "emotion-serving")]
        assert dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
        assert dep["status"]["availableReplicas"] == 2 and dep["status"]["updatedReplicas"] == 2
    patches = [r for r in fake.requests if r["method"] == "PATCH"]
    assert {r["path"] for r in patches} == {
        "/api/v1/namespaces/emotion/services/emotion-serving",
        "/apis/apps/v1/namespaces/emotion/deployments/emotion-serving",
    }
    for request in patches:
        assert request["content_type"] == "application/apply-patch+yaml"
        assert request["query"] == {"fieldManager": "emotion-deploy", "force": "True"}
    # it waited: several reads of the deployment per rollout, not one
    assert sum(r["method"] == "GET" and "deployments" in r["path"] for r in fake.requests) >= 6


def test_fake_api_rollout_that_never_becomes_ready_is_rolled_back():
    with FakeKubeApi(ticks_to_ready=2, broken_versions={"2"}) as fake:
        _deploy(fake, "1")
        with pytest.raises(StepError) as info:
            _deploy(fake, "2", timeout_s=0.5)
        message = str(info.value)
        assert "model version 2" in message and "not complete" in message
        assert "rolled back to revision 1 (model version 1)" in message
        assert _served_version(fake) == "1"
        dep = fake.deployments[("emotion", "emotion-serving")]
        assert dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"  # like kubectl undo
        assert "pod-template-hash" not in dep["spec"]["template"]["metadata"]["labels"]
    undo = [r for r in fake.requests if r["content_type"] == "application/json-patch+json"]
    assert len(undo) == 1


def test_fake_api_failed_first_rollout_has_nothing_to_roll_back_to():
    with FakeKubeApi(broken_versions={"1"}) as fake:
        with pytest.raises(StepError, match="no previous revision"):
            _deploy(fake, "1", timeout_s=0.3)


def test_cli_exits_non_zero_when_the_rollout_is_rolled_back(monkeypatch, tmp_path, capsys):
    from steps.deploy import cli
    from tests.cli_helpers import run_main

    with FakeKubeApi(broken_versions={"9"}) as fake:
        monkeypatch.setattr(cli, "_kube_client", lambda: _api(fake))
        args = [
            "rollout",
            "--deploy-target",
            "kubernetes",
            "--image",
            "img:1",
            "--deploy-namespace",
            "emotion",
            "--rollout-timeout-s",
            "0.3",
            "--result-dir",
            str(tmp_path),
        ]
        code, out = run_main(cli.main, [*args, "--model-uri", "models:/emotion-classifier/8"], capsys)
        assert code == 0, out
        assert (tmp_path / "served-version").read_text() == "8"
        code, out = run_main(cli.main, [*args, "--model-uri", "models:/emotion-classifier/9"], capsys)
        assert code == 2, out
        assert _served_version(fake) == "8"
