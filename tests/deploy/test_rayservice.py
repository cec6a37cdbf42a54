"""The KubeRay RayService (steps/deploy/rayservice_render.py): CRD, Ray Serve config, pod shape, upgrades."""

from __future__ import annotations

import copy
import subprocess
import sys

import kubernetes_validate
import pytest
import yaml
from pydantic import ValidationError
from ray.serve.schema import ServeDeploySchema

from pipelines.argo_schema import rayservice_errors
from serving import ray_app
from serving.ray_proxy import NODE_ENV
from serving.settings import ServeSettings
from shared.pod_shape import RUN_AS_USER, container_security_context, pod_security_context
from steps.deploy.rayservice_render import RayServiceSpec, main, render_rayservice, to_yaml
from steps.rayjob_manifest import S3_SECRET
from tests.deploy.test_k8s import K8S_VERSION

MODEL_URI = "models:/emotion-classifier/7"


def _spec(**kw) -> RayServiceSpec:
    base = dict(image="ghcr.io/acme/emotion-hpo-train:1.2.3", model_uri=MODEL_URI)
    return RayServiceSpec(**{**base, **kw})


def _templates(manifest: dict) -> list[dict]:
    cluster = manifest["spec"]["rayClusterConfig"]
    return [cluster["headGroupSpec"]["template"], *(g["template"] for g in cluster["workerGroupSpecs"])]


def _serve_config(manifest: dict) -> ServeDeploySchema:
    return ServeDeploySchema.model_validate(yaml.safe_load(manifest["spec"]["serveConfigV2"]))


def test_manifest_is_valid_against_the_kuberay_crd():
    manifest = render_rayservice(_spec(serve_args={"max_batch_size": 32}))
    assert (manifest["apiVersion"], manifest["kind"]) == ("ray.io/v1", "RayService")
    assert rayservice_errors(manifest) == []


def test_crd_validation_is_strict():
    manifest = render_rayservice(_spec())
    manifest["spec"]["upgradeStrategyy"] = {"type": "NewCluster"}
    manifest["spec"]["serveConfigV2"] = yaml.safe_load(manifest["spec"]["serveConfigV2"])  # not a string
    manifest["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["minReplicas"] = "1"
    errors = rayservice_errors(manifest)
    assert any("'upgradeStrategyy' was unexpected" in e for e in errors), errors
    assert any(e.startswith("spec.serveConfigV2:") and "is not of type 'string'" in e for e in errors), errors
    assert any("minReplicas: '1' is not of type 'integer'" in e for e in errors), errors
    wrong_kind = {**render_rayservice(_spec()), "kind": "RayJob"}
    assert rayservice_errors(wrong_kind)[0].startswith(
        "<root>: expected apiVersion ray.io/v1, kind RayService"
    )


def test_pod_templates_pass_strict_kubernetes_validation():
    """The embedded pods against the cluster's own core schema, as the Deployment's are."""
    for template in _templates(render_rayservice(_spec())):
        doc = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}, "template": template}
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_serve_config_is_a_ray_serve_config_for_the_app_builder():
    spec = _spec(min_replicas=2, max_replicas=6, cpus_per_replica=0.5, serve_args={"max_batch_size": 16})
    config = _serve_config(render_rayservice(spec))
    assert config.proxy_location == "EveryNode"
    assert (config.http_options.host, config.http_options.port) == ("0.0.0.0", 8000)
    (app,) = config.applications
    assert (app.name, app.route_prefix) == ("emotion-classifier", "/")
    assert app.import_path == "serving.ray_app:app_builder"
    assert app.args == {
        "model_uri": MODEL_URI,
        "replicas": 2,
        "max_replicas": 6,
        "cpus_per_replica": 0.5,
        "max_batch_size": 16,
    }
    # The builder takes these arguments (it refuses unknown ones) and scales as the spec says.
    assert app.import_path == f"{ray_app.__name__}:{ray_app.app_builder.__name__}"
    assert ray_app.app_builder(app.args) is not None
    options = ray_app.deployment_options(ServeSettings(**app.args))
    assert options["ray_actor_options"] == {"num_cpus": 0.5}
    autoscaling = options["autoscaling_config"]
    assert (autoscaling["min_replicas"], autoscaling["max_replicas"]) == (2, 6)


def test_queue_bounds_reach_ray_serve_and_are_checked_as_ray_would():
    options = ray_app.deployment_options(
        ServeSettings(model_uri=MODEL_URI, max_ongoing_requests=32, max_queued_requests=8)
    )
    assert (options["max_ongoing_requests"], options["max_queued_requests"]) == (32, 8)
    assert ray_app.deployment_options(ServeSettings(model_uri=MODEL_URI))["max_queued_requests"] == -1
    with pytest.raises(ValidationError, match="max_queued_requests"):
        ServeSettings(model_uri=MODEL_URI, max_queued_requests=0)  # Ray refuses 0 at deploy time


def test_upgrade_strategy_is_new_cluster():
    """Zero-downtime: a changed cluster spec brings up a new RayCluster and switches only once it serves."""
    manifest = render_rayservice(_spec())
    assert manifest["spec"]["upgradeStrategy"] == {"type": "NewCluster"}
    # RayService.spec.upgradeStrategy, not the RayCluster's (whose enum is Recreate|None): the CRD
    # says so, and a NewCluster there would be refused.
    misplaced = copy.deepcopy(manifest)
    misplaced["spec"]["rayClusterConfig"]["upgradeStrategy"] = misplaced["spec"].pop("upgradeStrategy")
    assert any("'NewCluster' is not one of ['Recreate', 'None']" in e for e in rayservice_errors(misplaced))


def test_every_pod_runs_as_the_pod_shape_user():
    manifest = render_rayservice(_spec())
    templates = _templates(manifest)
    assert len(templates) == 2
    for template in templates:
        pod = template["spec"]
        assert pod["securityContext"] == pod_security_context()
        assert pod["securityContext"]["runAsUser"] == RUN_AS_USER
        for container in pod.get("initContainers", []) + pod["containers"]:
            assert container["securityContext"] == container_security_context(read_only_root=False)
    # KubeRay adds the autoscaler as a sidecar of the head: it gets the same container shape
    autoscaler = manifest["spec"]["rayClusterConfig"]["autoscalerOptions"]["securityContext"]
    assert autoscaler == container_security_context(read_only_root=False)


def test_head_coordinates_and_workers_scale_with_the_replicas():
    spec = _spec(min_replicas=1, max_replicas=5, cpus_per_replica=1.0, worker_cpus=2)
    cluster = render_rayservice(spec)["spec"]["rayClusterConfig"]
    assert cluster["enableInTreeAutoscaling"] is True
    assert cluster["headGroupSpec"]["rayStartParams"] == {"dashboard-host": "0.0.0.0", "num-cpus": "0"}
    (group,) = cluster["workerGroupSpecs"]
    # 2 replicas per 2-CPU worker: 1 replica needs 1 pod, 5 need 3
    assert (group["replicas"], group["minReplicas"], group["maxReplicas"]) == (1, 1, 3)
    worker = group["template"]["spec"]["containers"][0]
    assert worker["resources"]["limits"]["cpu"] == "2"  # KubeRay gives Ray the limit's CPUs
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert head["image"] == worker["image"] == spec.image


def test_serve_port_and_readiness():
    manifest = render_rayservice(_spec())
    for template in _templates(manifest):
        (container,) = template["spec"]["containers"]
        assert {"containerPort": 8000, "name": "serve"} in container["ports"]
    worker = manifest["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    assert worker["readinessProbe"]["httpGet"] == {"path": "/-/healthz", "port": "serve"}
    # KubeRay picks HTTP (not wget) probes for its injected ones from Ray 2.53
    assert manifest["spec"]["rayClusterConfig"]["rayVersion"] == _spec().ray_version
    major, minor = (int(p) for p in _spec().ray_version.split(".")[:2])
    assert (major, minor) >= (2, 53)


def test_mlflow_env_comes_from_the_secret_and_s3_by_reference():
    manifest = render_rayservice(_spec(env_secret="my-serving-env"))
    for template in _templates(manifest):
        (container,) = template["spec"]["containers"]
        assert container["envFrom"] == [{"secretRef": {"name": "my-serving-env"}}]
        env = {e["name"]: e for e in container["env"]}
        assert "MLFLOW_TRACKING_URI" not in env
        literal = {name: e["value"] for name, e in env.items() if "valueFrom" not in e}
        assert literal == NODE_ENV  # no setting but the proxies' retry
        assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == S3_SECRET
    assert "my-serving-env" not in manifest["spec"]["serveConfigV2"]


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(min_replicas=3, max_replicas=2), "below min_replicas"),
        (dict(cpus_per_replica=4, worker_cpus=2), "does not fit a worker"),
        (dict(serve_args={"max_batch_sise": 8}), "max_batch_sise"),
        (dict(serve_args={"model_uri": "models:/other/1"}), "set by the spec itself"),
        (dict(serve_args={"backend": "tensorflow"}), "backend"),
        (dict(name="Emotion_Classifier"), "pattern"),
    ],
)
def test_spec_refuses_what_the_cluster_would(kw, message):
    with pytest.raises(ValidationError, match=message):
        _spec(**kw)


def test_yaml_has_no_aliases_and_round_trips():
    manifest = render_rayservice(_spec())
    text = to_yaml(manifest)
    assert "&id" not in text and "*id" not in text
    assert yaml.safe_load(text) == manifest
    assert "serveConfigV2: |" in text  # a literal block, readable in reviews


def test_main_prints_the_manifest(capsys):
    manifest = main(["--model-uri", MODEL_URI, "--image", "img:1", "--name", "emo", "--namespace", "ns"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed == manifest and rayservice_errors(printed) == []
    assert printed["metadata"] == {**printed["metadata"], "name": "emo", "namespace": "ns"}
    with pytest.raises(SystemExit) as exc:
        main(["--model-uri", MODEL_URI, "--image", "img:1", "--serve-arg", "nosuchfield=1"])
    assert exc.value.code == 2 and "nosuchfield" in capsys.readouterr().err


def test_module_runs_as_a_script():
    argv = [sys.executable, "-m", "steps.deploy.rayservice_render", "--model-uri", MODEL_URI]
    argv += ["--image", "i:1"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=120).stdout
    assert rayservice_errors(yaml.safe_load(out)) == []


def test_validator_takes_the_served_storage_version(monkeypatch, tmp_path):
    """A CRD of another KubeRay release that stores another version is refused, not half-checked."""
    from pipelines.argo_schema import VENDORED_SCHEMAS, kuberay_validator

    crd = yaml.safe_load((VENDORED_SCHEMAS / "kuberay" / "ray.io_rayservices.yaml").read_text())
    for version in crd["spec"]["versions"]:
        version["storage"] = version["name"] == "v1alpha1"
    (tmp_path / "kuberay").mkdir()
    (tmp_path / "kuberay" / "ray.io_rayservices.yaml").write_text(yaml.safe_dump(crd))
    monkeypatch.setenv("EMOTION_SCHEMAS_DIR", str(tmp_path))
    kuberay_validator.cache_clear()
    try:
        with pytest.raises(ValueError, match="stores v1alpha1, not ray.io/v1"):
            kuberay_validator("RayService")
    finally:
        kuberay_validator.cache_clear()
