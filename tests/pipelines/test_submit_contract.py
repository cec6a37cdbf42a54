"""Contract tests of pipelines/submit.py against a local Argo server (fake_argo_server.py).

The fake routes requests through Argo's saved swagger and validates every request body against
the operation's definition (strict), so a wrong path, verb or body field fails these tests.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from fake_argo_server import FakeArgo, RunningServer
from rich.console import Console

from pipelines import parameters, submit

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "s3cr3t-token"


@pytest.fixture
def fake():
    return FakeArgo(token=TOKEN)


@pytest.fixture
def server(fake):
    with RunningServer(fake) as running:
        yield running


def run(server, *argv, token=TOKEN, terminal=False, extra_env=None):
    out = io.StringIO()
    console = Console(file=out, width=200, force_terminal=terminal, color_system=None)
    env = {
        "ARGO_SERVER": server.url if server else "127.0.0.1:9",
        "ARGO_NAMESPACE": "ml",
        **(extra_env or {}),
    }
    if token:
        env["ARGO_TOKEN"] = token
    code = submit.main(list(argv), environ=env, console=console)
    text = out.getvalue()
    assert TOKEN not in text  # never printed, whatever happens
    return code, text


def test_install_template_creates_then_updates(server, fake):
    code, out = run(server, "--install-template")
    assert code == 0 and "created WorkflowTemplate emotion-hpo in ml" in out
    code, out = run(server, "--install-template")
    assert code == 0 and "updated WorkflowTemplate emotion-hpo in ml" in out
    assert fake.templates["emotion-hpo"]["metadata"]["resourceVersion"] == "2"
    methods = [(m, p) for m, p, _ in fake.requests]
    assert ("POST", "/api/v1/workflow-templates/ml") in methods
    assert ("PUT", "/api/v1/workflow-templates/ml/emotion-hpo") in methods
    assert fake.violations == []


def test_submit_passes_every_parameter_and_waits_to_success(server, fake):
    run(server, "--install-template")
    code, out = run(
        server, "--param", "num-samples=2", "-p", "hpo-runner=rayjob", "--wait", "--poll-interval", "0"
    )
    assert code == submit.EXIT_OK, out
    ((method, path, body),) = [r for r in fake.requests if r[:2] == ("POST", "/api/v1/workflows/ml")]
    spec = body["workflow"]["spec"]
    assert spec["workflowTemplateRef"] == {"name": "emotion-hpo"}
    sent = {p["name"]: p["value"] for p in spec["arguments"]["parameters"]}
    assert sent == {**parameters.defaults(), "num-samples": "2", "hpo-runner": "rayjob"}
    assert "hpo: Running" in out and "hpo: Succeeded" in out and "Succeeded" in out.splitlines()[-1]
    assert fake.violations == []


@pytest.mark.parametrize("phase, code", [("Failed", submit.EXIT_FAILED), ("Error", submit.EXIT_ERROR)])
def test_wait_exit_code_follows_the_final_phase(server, fake, phase, code):
    fake.phases = ["Pending", "Running", "Running", phase]
    run(server, "--install-template")
    got, out = run(server, "--wait", "--poll-interval", "0")
    assert got == code and "child 'hpo' failed" in out
    assert fake.violations == []


def test_wait_with_a_live_display(server, fake):
    run(server, "--install-template")
    code, out = run(server, "--wait", "--poll-interval", "0", terminal=True)
    assert code == 0 and "dvc-fetch" in out and "Succeeded" in out


def test_wait_timeout(server, fake):
    fake.phases = ["Running"]
    run(server, "--install-template")
    code, out = run(server, "--wait", "--poll-interval", "0.01", "--timeout", "0.05")
    assert code == submit.EXIT_TIMEOUT and "still Running" in out


def test_one_off_sends_the_whole_workflow(server, fake):
    code, _ = run(server, "--one-off")
    assert code == 0
    body = next(b for m, p, b in fake.requests if (m, p) == ("POST", "/api/v1/workflows/ml"))
    names = {t["name"] for t in body["workflow"]["spec"]["templates"]}
    assert {"main", "dvc-fetch", "hpo", "hpo-rayjob", "register", "deploy"} <= names
    assert fake.violations == []


def test_missing_template_says_how_to_install_it(server, fake):
    code, out = run(server, "--param", "seed=1")
    assert code == submit.EXIT_API
    assert "not installed" in out and "python pipelines/submit.py --install-template" in out
    assert not any(m == "POST" for m, _, _ in fake.requests)


def test_resubmit_memoized_with_overrides(server, fake):
    fake.phases = ["Failed"]
    run(server, "--install-template")
    run(server, "--wait", "--poll-interval", "0")
    first = next(iter(fake.workflows))
    code, out = run(server, "--resubmit", first, "--memoized", "-p", "max-epochs=5")
    assert code == 0 and "submitted" in out
    _, path, body = fake.requests[-1]
    assert path == f"/api/v1/workflows/ml/{first}/resubmit"
    assert body == {"name": first, "namespace": "ml", "memoized": True, "parameters": ["max-epochs=5"]}
    new = list(fake.workflows.values())[-1]
    values = {p["name"]: p["value"] for p in new["spec"]["arguments"]["parameters"]}
    assert values["max-epochs"] == "5" and values["num-samples"] == "8"
    assert fake.violations == []


def test_resubmit_unknown_run(server):
    code, out = run(server, "--resubmit", "nope-123")
    assert code == submit.EXIT_API and "no workflow named 'nope-123'" in out


def test_list_shows_runs(server, fake):
    run(server, "--install-template")
    run(server)
    code, out = run(server, "--list")
    assert code == 0 and "emotion-hpo-" in out
    assert any(p == "/api/v1/workflows/ml" and m == "GET" for m, p, _ in fake.requests)


def test_401_names_the_token_without_printing_it(server):
    code, out = run(server, "--list", token="wrong-token")
    assert code == submit.EXIT_API and "(401)" in out and "ARGO_TOKEN" in out and "wrong-token" not in out


def test_403(server, fake):
    fake.forbidden = True
    code, out = run(server, "--list")
    assert code == submit.EXIT_API and "(403)" in out and "namespace 'ml'" in out


def test_409_on_concurrent_template_change(server, fake, monkeypatch):
    run(server, "--install-template")
    original = fake._templates

    def racing(method, ns, rest, body):
        if method == "PUT":  # someone updated the template between our GET and PUT
            fake.templates["emotion-hpo"]["metadata"]["resourceVersion"] = "99"
        return original(method, ns, rest, body)

    monkeypatch.setattr(fake, "_templates", racing)
    code, out = run(server, "--install-template")
    assert code == submit.EXIT_API and "(409)" in out


def test_unreachable_server():
    code, out = run(None, "--list")
    assert code == submit.EXIT_API and "cannot reach the Argo server at https://127.0.0.1:9/" in out


def test_invalid_parameter_lists_the_valid_ones(server, fake):
    code, out = run(server, "--param", "epochs=3")
    assert code == submit.EXIT_USAGE and "unknown parameter 'epochs'" in out and "max-epochs" in out
    code, out = run(server, "--param", "search-alg=grid")
    assert code == submit.EXIT_USAGE and "random, optuna" in out
    assert fake.requests == []


def test_connection_settings_from_env_and_flags(tmp_path):
    args = submit.build_parser().parse_args(["--server", "argo.example.com:443", "--base-href", "argo"])
    conn = submit.connection_from(
        args, {"ARGO_SERVER": "ignored:1", "ARGO_INSECURE_SKIP_VERIFY": "true", "ARGO_TOKEN": "Bearer abc"}
    )
    assert conn.host == "https://argo.example.com:443/argo/"  # the trailing '/' keeps the prefix
    assert conn.verify_ssl is False and conn.namespace == "argo"
    assert conn.service().token == "Bearer abc"


def test_dry_run_prints_yaml_without_contacting_a_server():
    code, out = run(None, "--dry-run", "-p", "limit=100")
    doc = yaml.safe_load(out)
    assert code == 0 and doc["spec"]["workflowTemplateRef"]["name"] == "emotion-hpo"
    assert {p["name"]: p["value"] for p in doc["spec"]["arguments"]["parameters"]}["limit"] == "100"
    code, out = run(None, "--dry-run", "--one-off")
    assert yaml.safe_load(out)["spec"]["entrypoint"] == "main"


@pytest.mark.parametrize(
    "argv", [["pipelines/submit.py"], ["-m", "pipelines.submit"]], ids=["script", "module"]
)
def test_runs_as_a_script_and_as_a_module(argv, tmp_path):
    cwd = ROOT if argv[0] == "-m" else tmp_path
    target = [str(ROOT / argv[0])] if argv[0] != "-m" else argv
    proc = subprocess.run(
        [sys.executable, *target, "--dry-run", "--install-template"],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": ""},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert yaml.safe_load(proc.stdout)["kind"] == "WorkflowTemplate"


def test_the_fake_server_enforces_the_swagger(fake):
    """The contract check itself: unknown body fields and unknown operations are violations."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    status, _ = fake.handle(
        "POST",
        "/api/v1/workflows/ml",
        auth,
        {"workflow": {"metadata": {}, "spec": {"entrypoint": 1}}, "bogus": True},
    )
    assert status == 400
    assert any("'bogus' was unexpected" in v for v in fake.violations)
    assert any("1 is not of type 'string'" in v for v in fake.violations)
    fake.handle("POST", "/api/v1/workflows/ml/emotion-hpo-1/resubmit", auth, {})
    assert any("is not an Argo API operation" in v for v in fake.violations)
