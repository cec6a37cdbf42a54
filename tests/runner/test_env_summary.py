"""Step environment (secrets never written out), the demo profile and the end-of-run summary."""

from __future__ import annotations

import json

from pipelines.local_runner.state import RunState, TaskState
from pipelines.local_runner.summary import build_summary
from pipelines.profiles import profile_parameters
from tests.runner.conftest import write_workflow

SECRET = "s3cr3t-value-never-logged"


def _env_workflow() -> dict:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"generateName": "env-"},
        "spec": {
            "entrypoint": "show",
            "arguments": {"parameters": [{"name": "uri", "value": "sqlite:////x/mlflow.db"}]},
            "templates": [
                {
                    "name": "show",
                    "outputs": {"parameters": [{"name": "seen", "valueFrom": {"path": "/tmp/result/seen"}}]},
                    "container": {
                        "image": "python:3.11",
                        "command": ["python", "-c"],
                        "args": [
                            "import os, pathlib; e = os.environ; s = len(e['AWS_SECRET_ACCESS_KEY']);"
                            " pathlib.Path('/tmp/result/seen').write_text("
                            "f\"{e['TRACKING']} {e['OUT_DIR']} {s} {e.get('MISSING_SECRET')}\")"
                        ],
                        "env": [
                            {"name": "TRACKING", "value": "{{workflow.parameters.uri}}"},
                            {"name": "OUT_DIR", "value": "/tmp/result"},
                            {
                                "name": "AWS_SECRET_ACCESS_KEY",
                                "valueFrom": {"secretKeyRef": {"name": "s3", "key": "AWS_SECRET_ACCESS_KEY"}},
                            },
                            {
                                "name": "MISSING_SECRET",
                                "valueFrom": {
                                    "configMapKeyRef": {
                                        "name": "cfg",
                                        "key": "MISSING_SECRET",
                                        "optional": True,
                                    }
                                },
                            },
                        ],
                    },
                }
            ],
        },
    }


def _values_dir(tmp_path, secret: str = SECRET):
    folder = tmp_path / "values"
    (folder / "secrets" / "s3").mkdir(parents=True)
    (folder / "secrets" / "s3" / "AWS_SECRET_ACCESS_KEY").write_text(secret)
    return folder


def test_env_values_refs_and_secrets(run_workflow, tmp_path, monkeypatch):
    monkeypatch.setenv("MISSING_SECRET", "set on the host, not declared to the step")
    values = _values_dir(tmp_path)
    out = run_workflow(write_workflow(tmp_path, _env_workflow()), "--values-dir", str(values))
    assert out.exit_code == 0, out.output
    seen = out.task("show")["parameters"]["seen"]
    fs = out.run_dir / "tasks" / "show" / "fs"
    # an optional ref absent from --values-dir is unset, even when the host has that variable
    assert seen == f"sqlite:////x/mlflow.db {fs}/tmp/result {len(SECRET)} None"
    # the secret reached the step (its length matches) but none of the runner's records
    for path in out.run_dir.rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text(errors="replace"), path
    assert SECRET not in out.output


def test_a_host_variable_does_not_satisfy_a_required_secret(run_workflow, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    out = run_workflow(write_workflow(tmp_path, _env_workflow()))
    assert out.exit_code == 2, out.output
    flat = " ".join(out.output.split())
    assert "secretKeyRef s3/AWS_SECRET_ACCESS_KEY is not available locally" in flat
    assert not (tmp_path / ".local" / "runs").exists() or not any((tmp_path / ".local" / "runs").iterdir())


def test_pass_env_gives_a_host_variable_on_purpose(run_workflow, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET + "-host")
    out = run_workflow(write_workflow(tmp_path, _env_workflow()), "--pass-env", "AWS_SECRET_ACCESS_KEY")
    assert out.exit_code == 0, out.output
    assert out.task("show")["parameters"]["seen"].split()[2] == str(len(SECRET + "-host"))


def _reads_undeclared() -> dict:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"generateName": "undeclared-"},
        "spec": {
            "entrypoint": "read",
            "templates": [
                {
                    "name": "read",
                    "container": {
                        "image": "python:3.11",
                        "command": ["python", "-c", "import os; print(os.environ['EMOTION_UNDECLARED'])"],
                        "env": [{"name": "DECLARED", "value": "yes"}],
                    },
                }
            ],
        },
    }


def test_a_step_does_not_see_undeclared_host_variables(run_workflow, tmp_path, monkeypatch):
    monkeypatch.setenv("EMOTION_UNDECLARED", "from the host")
    out = run_workflow(write_workflow(tmp_path, _reads_undeclared()), "--no-retry")
    assert out.exit_code == 1, out.output
    log = (out.run_dir / "logs" / "read.log").read_text()
    assert "KeyError: 'EMOTION_UNDECLARED'" in log
    # declaring it (here: passing it on purpose) is what makes it visible
    again = run_workflow(write_workflow(tmp_path, _reads_undeclared()), "--pass-env", "EMOTION_UNDECLARED")
    assert again.exit_code == 0, again.output


def test_demo_profile_only_sets_declared_parameters(tmp_path):
    declared = {"registry-url", "mlflow-tracking-uri", "num-samples", "limit"}
    values = profile_parameters("demo", tmp_path / ".local", declared)
    assert set(values) == declared
    assert values["registry-url"] == str((tmp_path / ".local" / "data-registry").resolve())
    assert values["mlflow-tracking-uri"] == f"sqlite:///{(tmp_path / '.local' / 'mlflow.db').resolve()}"
    assert values["num-samples"] == "3" and values["limit"] == "2000"


def test_param_overrides_the_profile(run_workflow, tmp_path):
    values = ["--values-dir", str(_values_dir(tmp_path))]  # the workflow requires this secret
    doc = _env_workflow()
    doc["spec"]["arguments"]["parameters"].append({"name": "limit", "value": "0"})
    doc["spec"]["templates"][0]["container"]["env"][0]["value"] = "{{workflow.parameters.limit}}"
    path = write_workflow(tmp_path, doc)
    assert run_workflow(path, "--profile", "demo", *values).state["parameters"]["limit"] == "2000"
    out = run_workflow(path, "--profile", "demo", "--param", "limit=7", *values)
    assert out.state["parameters"]["limit"] == "7"


def test_summary_collects_hpo_register_and_deploy_results(tmp_path):
    run_dir = tmp_path / "run"
    for task, result in {
        "hpo": {"best_config": {"learning_rate": 3e-5}, "best_val_accuracy": 0.61, "best_run_id": "r1"},
        "register": {"model_name": "emotion-classifier", "version": "3", "promoted": True, "reason": "first"},
    }.items():
        result_dir = run_dir / "tasks" / task / "fs" / "tmp" / "result"
        result_dir.mkdir(parents=True)
        (result_dir / "result.json").write_text(json.dumps(result))
    state = RunState(
        run_id="r",
        workflow="wf.yaml",
        workflow_name="r",
        workflow_uid="u",
        parameters={"mlflow-tracking-uri": "sqlite:////x.db"},
        phase="succeeded",
        tasks={
            "hpo": TaskState(phase="succeeded"),
            "register": TaskState(phase="succeeded"),
            "deploy": TaskState(phase="cached", parameters={"endpoint-url": "http://127.0.0.1:1"}),
        },
    )
    summary = build_summary(state, run_dir, smoke=False)
    assert summary["best_trial"]["best_config"] == {"learning_rate": 3e-5}
    assert summary["best_trial"]["best_val_accuracy"] == 0.61
    assert summary["registered_model"]["version"] == "3" and summary["registered_model"]["promoted"] is True
    assert summary["server"]["endpoint_url"] == "http://127.0.0.1:1"
    assert summary["mlflow"]["open_with"] == "make mlflow-ui" and summary["stop_server_with"] == "make stop"
