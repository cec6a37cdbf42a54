"""docker/compose.yaml, the local platform stack, checked without a container engine.

It must validate against the Compose specification's JSON schema (vendored by check-jsonschema,
a dev dependency), and describe the topology that tests/cluster/ runs without containers: the
same buckets, the MLflow server with its artifact root on S3 and no artifact proxying, and the
standard variables (MLFLOW_TRACKING_URI, MLFLOW_S3_ENDPOINT_URL, AWS_*) for every client.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker" / "compose.yaml"


def _check(path: Path) -> subprocess.CompletedProcess:
    tool = Path(sys.executable).parent / "check-jsonschema"
    exe = str(tool) if tool.exists() else shutil.which("check-jsonschema")
    assert exe, "check-jsonschema is not installed (pip install the dev extras)"
    return subprocess.run(
        [exe, "--builtin-schema", "vendor.compose-spec", str(path)], capture_output=True, text=True
    )


@pytest.fixture(scope="module")
def stack() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_file_matches_the_compose_spec_schema():
    proc = _check(COMPOSE)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_schema_check_catches_a_broken_compose_file(tmp_path):
    bad = tmp_path / "compose.yaml"
    bad.write_text("services:\n  a:\n    image: x\n    healthcheck:\n      tets: [CMD, true]\n")
    assert _check(bad).returncode == 1


def test_every_long_running_service_has_a_healthcheck_and_named_volumes(stack):
    for name in ("minio", "mlflow", "serving"):
        service = stack["services"][name]
        assert service["healthcheck"]["test"], name
        for volume in service.get("volumes", []):
            assert volume.split(":")[0] in stack["volumes"], f"{name}: {volume} is not a named volume"


def test_the_stack_is_the_topology_the_s3_integration_tests_run(stack):
    from tests.cluster.conftest import DVC_BUCKET, MLFLOW_BUCKET, S3Server

    services = stack["services"]
    made = re.findall(r"local/([a-z0-9.-]+)", " ".join(services["buckets"]["entrypoint"]))
    assert set(made) == {MLFLOW_BUCKET, DVC_BUCKET}
    command = services["mlflow"]["command"]
    assert command[command.index("--default-artifact-root") + 1] == f"s3://{MLFLOW_BUCKET}/artifacts"
    assert "--no-serve-artifacts" in command  # clients write to S3 themselves (serve_artifacts=False)
    client_vars = set(S3Server("http://x", "k", "s", Path("log")).env())
    for name in ("mlflow", "serving"):
        assert client_vars <= set(services[name]["environment"]), name
    assert services["serving"]["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert services["mlflow"]["environment"]["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
