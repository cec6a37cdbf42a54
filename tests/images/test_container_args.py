"""The pod's shape as engine flags: what the Deployment declares is what a local container gets."""

from __future__ import annotations

import pytest

from shared import containers
from steps.deploy.k8s_render import K8sSpec, render_deployment


@pytest.fixture
def deployment_pod():
    spec = K8sSpec(name="s", namespace="n", image="emotion-serving:abc", model_uri="models:/m@champion",
                   model_version="3", cpu_limit="1500m", memory_limit="2Gi")  # fmt: skip
    return render_deployment(spec)["spec"]["template"]["spec"]


def _pairs(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_the_deployments_container_runs_with_its_user_read_only_root_limits_and_volumes(
    deployment_pod, tmp_path, monkeypatch
):
    monkeypatch.setenv("CONTAINER_ENGINE", "sh")  # any installed program: only the argv is checked
    container = deployment_pod["containers"][0]
    argv = containers.run_argv(
        container,
        image="emotion-serving:abc",
        sources={"/cache": tmp_path, "/tmp": None},
        env=containers.declared_env(container),
        pod_security=deployment_pod["securityContext"],
    )
    assert _pairs(argv, "--user") == ["10001:10001"]
    assert "--read-only" in argv and "--cap-drop=ALL" in argv
    assert _pairs(argv, "--security-opt") == ["no-new-privileges"]
    assert _pairs(argv, "--cpus") == ["1.5"] and _pairs(argv, "--memory") == [str(2 * 2**30)]
    assert _pairs(argv, "-v") == [f"{tmp_path.resolve()}:/cache:rw"]
    assert _pairs(argv, "--tmpfs") == ["/tmp:rw,mode=1777"]
    env = dict(e.split("=", 1) for e in _pairs(argv, "--env"))
    assert env["SERVE_MODEL_URI"] == "models:/m@champion" and env["SERVE_CACHE_DIR"] == "/cache/serving"
    assert "AWS_SECRET_ACCESS_KEY" not in env  # a secret ref is only set when its value is given
    assert argv[argv.index("--entrypoint") + 1 :] == ["python", "emotion-serving:abc", "-m", "serving"]


def test_a_mount_without_a_local_source_is_an_error(deployment_pod, monkeypatch):
    monkeypatch.setenv("CONTAINER_ENGINE", "sh")
    with pytest.raises(KeyError, match="/cache"):
        containers.run_argv(deployment_pod["containers"][0], image="i", sources={"/tmp": None}, env={})


@pytest.mark.parametrize("quantity, expected", [("2Gi", 2 * 2**30), ("512Mi", 512 * 2**20), ("1G", 10**9)])
def test_memory_quantities(quantity, expected):
    assert containers.memory_quantity(quantity) == expected


def test_no_engine_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("CONTAINER_ENGINE", "no-such-engine-here")
    with pytest.raises(containers.EngineMissing, match="not installed"):
        containers.engine_command()
