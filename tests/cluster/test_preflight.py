"""Pre-flight checks: a broken object store or Ray address fails fast, naming the endpoint.

The S3 checks run against the signature-checking S3 server; the Ray checks against a closed port.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from shared.errors import EXIT_TRANSIENT, StepError, TransientError
from shared.object_store import check_bucket, check_dvc_remote, check_s3_uri, display_endpoint, parse_s3_uri
from shared.processes import free_port
from shared.ray_cluster import (
    CREDENTIAL_ENV_VARS,
    check_ray_address,
    connect,
    credentials_hidden_from_ray_tune,
    parse_ray_address,
    resolve_ray_address,
)
from shared.settings import Settings
from tests.cluster.conftest import (
    DVC_BUCKET,
    EMPTY_BUCKET,
    MLFLOW_BUCKET,
    S3PipelineData,
    S3Server,
    StepRunner,
    hpo_args,
)
from tests.mlflow_server import MlflowServer


def _settings(server: S3Server, **overrides: str) -> Settings:
    values = {
        "mlflow_s3_endpoint_url": server.endpoint_url,
        "aws_access_key_id": server.access_key_id,
        "aws_secret_access_key": server.secret_access_key,
        **overrides,
    }
    return Settings(**values)


def _assert_no_secret(message: str, server: S3Server) -> None:
    assert server.secret_access_key not in message
    assert server.access_key_id not in message


# ---------------------------------------------------------------------------------------------
# S3
# ---------------------------------------------------------------------------------------------


def test_parse_s3_uri_splits_bucket_and_prefix_and_rejects_other_schemes():
    assert parse_s3_uri("s3://mlflow/artifacts/1/") == parse_s3_uri("s3://mlflow/artifacts/1")
    loc = parse_s3_uri("s3://mlflow/artifacts/1")
    assert (loc.bucket, loc.prefix, loc.uri) == ("mlflow", "artifacts/1", "s3://mlflow/artifacts/1")
    for bad in ("/tmp/x", "gs://b/p", "s3:///nobucket"):
        with pytest.raises(StepError, match="not an S3 URI"):
            parse_s3_uri(bad)


def test_display_endpoint_drops_user_info():
    assert display_endpoint("http://user:pa55@minio.svc:9000/") == "http://minio.svc:9000/"
    assert display_endpoint(None) == "the default AWS S3 endpoint"


@pytest.mark.slow
def test_good_credentials_and_existing_buckets_pass(s3_server: S3Server):
    settings = _settings(s3_server)
    for bucket in (MLFLOW_BUCKET, DVC_BUCKET, EMPTY_BUCKET):
        assert check_s3_uri(f"s3://{bucket}/some/prefix", settings) is None
    # the same settings do reach the server: a bucket that is not there is refused
    with pytest.raises(StepError, match="no-such-bucket-here"):
        check_s3_uri("s3://no-such-bucket-here/some/prefix", settings)


@pytest.mark.slow
def test_unreachable_endpoint_names_endpoint_and_bucket(s3_server: S3Server):
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there: down for now, retried
    with pytest.raises(TransientError) as err:
        check_s3_uri(f"s3://{MLFLOW_BUCKET}/artifacts", _settings(s3_server, mlflow_s3_endpoint_url=endpoint))
    message = str(err.value)
    assert f"S3 endpoint {endpoint} is unreachable" in message
    assert repr(MLFLOW_BUCKET) in message
    _assert_no_secret(message, s3_server)


@pytest.mark.slow
def test_missing_bucket_names_bucket_and_endpoint(s3_server: S3Server):
    with pytest.raises(StepError) as err:
        check_s3_uri("s3://no-such-bucket/artifacts", _settings(s3_server))
    message = str(err.value)
    assert "bucket 'no-such-bucket' does not exist" in message
    assert s3_server.endpoint_url in message
    _assert_no_secret(message, s3_server)


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides, code",
    [
        ({"aws_secret_access_key": "wrong-secret-0123456789"}, "SignatureDoesNotMatch"),
        ({"aws_access_key_id": "AKIAUNKNOWNKEY000000"}, "InvalidAccessKeyId"),
    ],
)
def test_wrong_credentials_are_reported_without_the_secret(s3_server: S3Server, overrides, code):
    with pytest.raises(StepError) as err:
        check_s3_uri(f"s3://{MLFLOW_BUCKET}/artifacts", _settings(s3_server, **overrides))
    message = str(err.value)
    assert f"S3 endpoint {s3_server.endpoint_url} rejected the credentials" in message
    assert code in message and repr(MLFLOW_BUCKET) in message
    assert "AWS_ACCESS_KEY_ID" in message  # tells the user which settings to fix
    _assert_no_secret(message, s3_server)
    for value in overrides.values():
        assert value not in message


@pytest.mark.slow
def test_check_bucket_takes_explicit_endpoint_and_credentials(s3_server: S3Server):
    """The form a DVC remote uses: its own endpoint, credentials given directly."""
    check_bucket(
        f"s3://{DVC_BUCKET}",
        endpoint_url=s3_server.endpoint_url,
        access_key_id=s3_server.access_key_id,
        secret_access_key=s3_server.secret_access_key,
    )
    with pytest.raises(StepError, match="rejected the credentials"):
        check_bucket(
            f"s3://{DVC_BUCKET}",
            endpoint_url=s3_server.endpoint_url,
            access_key_id=s3_server.access_key_id,
            secret_access_key="not-it",
        )


@pytest.mark.slow
def test_dvc_remote_is_checked_with_its_own_endpoint(s3_server: S3Server, monkeypatch):
    """A registry's `.dvc/config` remote section: url + endpointurl; keys from the environment."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_access_key)
    check_dvc_remote({"url": f"s3://{DVC_BUCKET}/emotion", "endpointurl": s3_server.endpoint_url})
    check_dvc_remote({"url": "/srv/dvc-remote"})  # a local remote needs no object store
    closed = f"http://127.0.0.1:{free_port()}"
    unreachable = rf"S3 endpoint {closed} is unreachable \(needed for bucket 'dvc-remote'\)"
    with pytest.raises(TransientError, match=unreachable):
        check_dvc_remote({"url": f"s3://{DVC_BUCKET}/emotion", "endpointurl": closed})
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "rotated-away")
    with pytest.raises(StepError, match="rejected the credentials") as err:
        check_dvc_remote({"url": f"s3://{DVC_BUCKET}/emotion", "endpointurl": s3_server.endpoint_url})
    assert "rotated-away" not in str(err.value)


def test_non_s3_uris_are_not_checked(monkeypatch):
    """Local artifact roots and proxied `mlflow-artifacts:` need no object-store pre-flight."""
    import shared.object_store as object_store

    checked: list[str] = []
    monkeypatch.setattr(object_store, "check_bucket", lambda loc, **kw: checked.append(loc.uri))
    settings = Settings(mlflow_s3_endpoint_url=f"http://127.0.0.1:{free_port()}")
    for uri in ("/tmp/mlartifacts", "file:///tmp/x", "mlflow-artifacts:/1/abc"):
        check_s3_uri(uri, settings)
    assert checked == []
    check_s3_uri("s3://mlflow/artifacts", settings)  # an s3:// URI is checked
    assert checked == ["s3://mlflow/artifacts"]


# ---------------------------------------------------------------------------------------------
# Ray
# ---------------------------------------------------------------------------------------------


def test_parse_ray_address_forms():
    def parts(address: str) -> tuple[str, int, bool]:
        parsed = parse_ray_address(address)
        return parsed.host, parsed.port, parsed.client

    assert parts("head.svc:6379") == ("head.svc", 6379, False)
    assert parts("head.svc") == ("head.svc", 6379, False)
    assert parts("ray://head.svc") == ("head.svc", 10001, True)
    with pytest.raises(StepError, match="dashboard/job-submission URL.*ray job submit"):
        parse_ray_address("http://head.svc:8265")
    with pytest.raises(StepError, match="port is not a number"):
        parse_ray_address("head.svc:http")
    with pytest.raises(StepError, match="not HOST:PORT"):
        parse_ray_address("head.svc:6379/x")


def test_resolve_ray_address_local_auto_and_env():
    assert resolve_ray_address(None) is None
    assert resolve_ray_address("") is None
    assert resolve_ray_address("local") is None
    assert resolve_ray_address("auto", environ={"RAY_ADDRESS": "10.0.0.5:6379"}) == "10.0.0.5:6379"
    assert resolve_ray_address("auto", environ={}) == "auto"
    assert resolve_ray_address(" 10.0.0.5:6379 ") == "10.0.0.5:6379"


def test_unreachable_ray_address_names_it():
    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(TransientError, match=rf"Ray cluster at {address} is unreachable"):
        check_ray_address(address, timeout_s=2)
    with pytest.raises(StepError, match="does not resolve"):
        check_ray_address("no-such-head.invalid:6379", timeout_s=2)


def test_connect_fails_before_starting_ray():
    import ray

    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(TransientError, match=rf"Ray cluster at {address} is unreachable"):
        connect(address, timeout_s=2)
    assert not ray.is_initialized()


# ---------------------------------------------------------------------------------------------
# Through the step CLIs
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_hpo_cli_with_unreachable_ray_address_fails_before_any_run(
    s3_pipeline_data: S3PipelineData, step_runner: StepRunner, s3_mlflow_server: MlflowServer, tmp_path
):
    from mlflow import MlflowClient

    address = f"127.0.0.1:{free_port()}"
    experiment = "cluster-preflight-ray"
    run = step_runner(
        "steps.hpo", *hpo_args(s3_pipeline_data, tmp_path), "--ray-address", address,
        env={"MLFLOW_EXPERIMENT_NAME": experiment}, check=False, timeout=120,
    )  # fmt: skip
    assert run.returncode == EXIT_TRANSIENT, run.log[-3000:]  # a Ray head that is down: retried
    assert f"Ray cluster at {address} is unreachable" in " ".join(run.log.split())
    assert "Traceback" not in run.log
    client = MlflowClient(tracking_uri=s3_mlflow_server.url)
    exp = client.get_experiment_by_name(experiment)
    assert exp is None or not client.search_runs([exp.experiment_id]), "a run was opened before the check"
    assert not (tmp_path / "result" / "result.json").exists()


def test_credentials_are_hidden_from_ray_tune_but_not_from_the_sdks(monkeypatch):
    """Inside the block Tune, which reads `os.environ`, finds no credentials to copy into the trials'
    runtime env; the process environment (pyarrow's AWS SDK, child processes) keeps them."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    show = f"import json, os; print(json.dumps({{k: os.environ.get(k) for k in {CREDENTIAL_ENV_VARS!r}}}))"
    with pytest.raises(RuntimeError), credentials_hidden_from_ray_tune():
        assert not set(CREDENTIAL_ENV_VARS) & set(os.environ)
        child = subprocess.run([sys.executable, "-c", show], capture_output=True, text=True, check=True)
        seen = {k: v for k, v in json.loads(child.stdout).items() if v is not None}
        assert seen == {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "s3cr3t"}
        raise RuntimeError("a failed search")
    assert (os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]) == ("AKIAEXAMPLE", "s3cr3t")
    assert "AWS_SESSION_TOKEN" not in os.environ  # nothing that was unset appears


# A local Ray in its own process: `ray.init()` in the test process would turn on Ray's token auth
# in this process's environment, and the module's later Ray clusters would refuse the steps.
_ENV_PROBE = """
import json, os, sys
import ray
from ray import tune
from shared.ray_cluster import credentials_hidden_from_ray_tune

def trial(config):  # which AWS_* variables its runtime env and its process environment hold
    runtime_env = ray.get_runtime_context().runtime_env.get("env_vars") or {}
    tune.report({
        "runtime_env": ",".join(sorted(k for k in runtime_env if k.startswith("AWS_"))),
        "environ": os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
    })

def fit(name):
    run_config = tune.RunConfig(name=name, storage_path=sys.argv[1], verbose=0)
    return tune.Tuner(trial, run_config=run_config).fit()[0].metrics

ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
with credentials_hidden_from_ray_tune():
    hidden = fit("hidden")
plain = fit("plain")
ray.shutdown()
print(json.dumps({"hidden": hidden, "plain": plain}, default=str))
"""


@pytest.mark.slow
def test_trials_runtime_env_holds_no_credentials(tmp_path):
    """The behaviour that matters: a trial's runtime env (what Ray logs and shows in the dashboard)
    has no credentials, while the trial still has them from its node (here the local raylet)."""
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "s3cr3t"}
    done = subprocess.run(
        [sys.executable, "-c", _ENV_PROBE, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    hidden, plain = found["hidden"], found["plain"]
    assert hidden["runtime_env"] == "", hidden
    assert hidden["environ"] == "s3cr3t"  # the trial can still reach S3
    # Without the block Tune copies them (if this fails, Tune stopped doing so: the block is moot).
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(plain["runtime_env"].split(","))
