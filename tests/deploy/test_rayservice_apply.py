"""The rayservice target (steps/deploy/rayservice_apply.py) against the FAKE Kubernetes API + KubeRay.

The fake (tests/deploy/fake_kube_api.py) stands in for the API server and KubeRay's controller: a
new model is rolled out by Serve in place, a new image by a pending RayCluster; a broken model
version never runs. Not a real cluster: what KubeRay reports is modelled on its v1.7 status.
"""

from __future__ import annotations

import pytest
import yaml

from shared.errors import StepError
from shared.settings import Settings
from steps.deploy.contract import DeployInput, Target
from steps.deploy.k8s_apply import RolloutFailed
from steps.deploy.rayservice_apply import rollout_rayservice, serving_progress
from tests.deploy.fake_kube_api import FakeKubeApi
from tests.deploy.test_k8s import _api

KEY = ("emotion", "emotion-serving")
IMAGE = "ghcr.io/acme/emotion-hpo-train:1.2.3"


def _deploy(fake: FakeKubeApi, version: str, *, image: str = IMAGE, timeout_s: float = 5.0, **serve_env):
    inp = DeployInput(
        model_uri=f"models:/emotion-classifier/{version}",
        deploy_target=Target.rayservice,
        ray_image=image,
        deploy_namespace="emotion",
        rollout_timeout_s=timeout_s,
        serve_env=serve_env,
    )
    return rollout_rayservice(
        inp, Settings(mlflow_tracking_uri="http://mlflow:5000"), _api(fake), poll_s=0.02
    )


def _app_args(fake: FakeKubeApi) -> dict:
    return yaml.safe_load(fake.rayservices[KEY]["spec"]["serveConfigV2"])["applications"][0]["args"]


def test_applies_the_rayservice_and_waits_until_it_serves():
    with FakeKubeApi(ticks_to_ready=3) as fake:
        result = _deploy(fake, "1", SERVE_MAX_BATCH_SIZE="16", SERVE_MAX_REPLICAS="6")
        assert result.deploy_target == Target.rayservice and result.served_version == "1"
        assert result.endpoint_url == "http://emotion-serving-serve-svc.emotion.svc:8000"
        assert fake.served_model[KEY] == "models:/emotion-classifier/1"
        args = _app_args(fake)
        # the step's SERVE_* settings reach the app builder; the replica bounds are the spec's
        assert args["max_batch_size"] == "16" and args["replicas"] == 2 and args["max_replicas"] == 6
        assert fake.rayservices[KEY]["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"][
            "containers"
        ][0]["image"] == IMAGE  # fmt: skip
        result = _deploy(fake, "2")  # a new model: Serve rolls it out in place
        assert result.served_version == "2" and fake.served_model[KEY].endswith("/2")
    patches = [r for r in fake.requests if r["method"] == "PATCH"]
    assert {r["path"] for r in patches} == {"/apis/ray.io/v1/namespaces/emotion/rayservices/emotion-serving"}
    assert all(r["content_type"] == "application/apply-patch+yaml" for r in patches)
    assert all(r["query"] == {"fieldManager": "emotion-deploy", "force": "True"} for r in patches)
    # it waited: reads until the app ran, not one
    assert sum(r["method"] == "GET" for r in fake.requests) >= 6


def test_a_new_image_waits_for_the_pending_cluster_to_take_the_traffic():
    with FakeKubeApi(ticks_to_ready=3) as fake:
        _deploy(fake, "1")
        result = _deploy(fake, "2", image="ghcr.io/acme/emotion-hpo-train:1.2.4")
        assert result.served_version == "2" and fake.served_model[KEY].endswith("/2")
        assert fake.rayservices[KEY]["status"]["activeServiceStatus"]["rayClusterName"] == "emotion-serving-2"


@pytest.mark.parametrize("new_image", [False, True], ids=["in-place", "new-cluster"])
def test_a_model_that_cannot_load_leaves_the_old_one_serving(new_image):
    with FakeKubeApi(ticks_to_ready=2, broken_versions={"2"}) as fake:
        _deploy(fake, "1")
        image = "ghcr.io/acme/emotion-hpo-train:1.2.4" if new_image else IMAGE
        with pytest.raises(StepError) as info:
            _deploy(fake, "2", image=image, timeout_s=0.5)
        message = str(info.value)
        assert "model version 2" in message
        assert "(models:/emotion-classifier/1) was applied again and keeps serving" in message
        assert fake.served_model[KEY] == "models:/emotion-classifier/1"
        assert _app_args(fake)["model_uri"] == "models:/emotion-classifier/1"  # the spec is put back


def test_a_first_rollout_that_fails_says_there_is_nothing_to_keep():
    with FakeKubeApi(broken_versions={"1"}) as fake:
        with pytest.raises(StepError, match="DEPLOY_FAILED.*no previous RayService"):
            _deploy(fake, "1", timeout_s=2)


def test_without_the_ray_image_or_with_bad_settings_it_refuses_before_applying():
    with FakeKubeApi() as fake:
        with pytest.raises(StepError, match="--ray-image is required"):
            _deploy(fake, "1", image="")
        with pytest.raises(StepError, match="max_replicas"):
            _deploy(fake, "1", SERVE_REPLICAS="3", SERVE_MAX_REPLICAS="1")
    assert not [r for r in fake.requests if r["method"] == "PATCH"]


def _status(**status) -> dict:
    return {"metadata": {"generation": 2}, "status": {"observedGeneration": 2, **status}}


def test_serving_progress_reads_kuberay_status():
    ready = [{"type": "Ready", "status": "True"}, {"type": "UpgradeInProgress", "status": "False"}]
    running = {"applicationStatuses": {"emotion-classifier": {"status": "RUNNING"}}, "rayClusterName": "c"}
    assert serving_progress(_status(conditions=ready, activeServiceStatus=running))[0]
    stale = {"metadata": {"generation": 3}, "status": {"observedGeneration": 2, "conditions": ready}}
    assert serving_progress(stale) == (False, "waiting for KubeRay to observe the new spec")
    upgrading = [ready[0], {"type": "UpgradeInProgress", "status": "True"}]
    done, message = serving_progress(_status(conditions=upgrading, activeServiceStatus=running))
    assert not done and "old one serves" in message
    failed = {"applicationStatuses": {"emotion-classifier": {"status": "DEPLOY_FAILED", "message": "boom"}}}
    with pytest.raises(RolloutFailed, match="DEPLOY_FAILED on the new RayCluster: boom"):
        serving_progress(
            _status(conditions=upgrading, activeServiceStatus=running, pendingServiceStatus=failed)
        )
