"""`run_local --engine podman|docker`: how a template becomes the engine's command (no engine runs here)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from pipelines.local_runner import engine_run
from pipelines.local_runner.engine_run import Engine, parse_volume
from pipelines.local_runner.errors import WorkflowError
from pipelines.local_runner.task import TaskContext, _in_image
from pipelines.run_local import app
from shared import containers

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "pipelines" / "emotion-hpo.yaml"


@pytest.fixture
def podman(monkeypatch):
    monkeypatch.setattr(containers.shutil, "which", lambda name: f"/usr/bin/{name}")


def _hpo_template() -> dict:
    doc = yaml.safe_load(WORKFLOW.read_text())
    return next(t for t in doc["spec"]["templates"] if t["name"] == "hpo")


def _flag_values(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, word in enumerate(argv[:-1]) if word == flag]


def test_the_hpo_template_runs_in_its_image_with_its_paths_env_and_the_local_dir(podman, tmp_path):
    local = tmp_path / ".local"
    task_dir = local / "runs" / "r" / "tasks" / "hpo"
    (task_dir / "fs" / "tmp").mkdir(parents=True)
    engine = Engine("podman", local, {"EMOTION_LOCAL_DIR": str(local)}, ["/etc:/host-etc:ro"])
    ctx = TaskContext(local / "runs" / "r", ROOT, None, None, None, False, {}, base_env=dict(os.environ))
    doc = yaml.safe_load(WORKFLOW.read_text())
    variables = {
        f"workflow.parameters.{p['name']}": str(p.get("value", ""))
        for p in doc["spec"]["arguments"]["parameters"]
    }
    variables.update(
        {
            "workflow.parameters.mlflow-tracking-uri": "sqlite:////x/mlflow.db",
            "workflow.uid": "uid-1",
            "inputs.parameters.data-version": "v1",
            "inputs.parameters.dataset-hash": "abc",
            "inputs.parameters.registry-url": str(local / "data-registry"),
            "inputs.artifacts.tokenized.path": "/tmp/inputs/tokenized",
            "inputs.artifacts.search-space.path": "/tmp/inputs/search-space.yaml",
            "outputs.artifacts.result.path": "/tmp/result",
        }
    )
    argv, client_env, name = _in_image(
        _hpo_template(), "hpo", variables, task_dir, engine, ctx, "img:1", "hpo"
    )

    assert argv[:4] == ["podman", "--runtime", "/usr/bin/runc", "run"] and name in argv
    # the pod's user (shared/pod_shape.py), the local dir and the task's folder made writable to it
    assert _flag_values(argv, "--user") == ["10001:10001"]
    assert "--cap-drop=ALL" in argv and "no-new-privileges" in argv
    for folder in (local, task_dir / "fs" / "tmp", task_dir):
        mode = folder.stat()
        assert mode.st_gid == 10001 and mode.st_mode & stat.S_IWGRP and mode.st_mode & stat.S_ISGID, folder
    mounts = _flag_values(argv, "-v")
    assert f"{(task_dir / 'fs' / 'tmp').resolve()}:/tmp:rw" in mounts  # every artifact path is under /tmp
    assert f"{local.resolve()}:{local.resolve()}:rw" in mounts  # links and local defaults resolve inside
    assert "/etc:/host-etc:ro" in mounts
    assert _flag_values(argv, "--tmpfs") == ["/dev/shm:rw,mode=1777"]  # emptyDir medium Memory
    env = dict(e.split("=", 1) for e in _flag_values(argv, "--env"))
    assert env["MLFLOW_TRACKING_URI"] == "sqlite:////x/mlflow.db"
    assert env["EMOTION_LOCAL_DIR"] == str(local)
    assert env["ARGO_PROGRESS_FILE"].startswith(str(task_dir))
    assert "PATH" not in env and "HOME" not in env and "VIRTUAL_ENV" not in env  # the image's, not the host's
    assert (
        not set(env)
        - {v["name"] for v in _hpo_template()["container"]["env"]}
        - {
            "EMOTION_LOCAL_DIR",
            "ARGO_PROGRESS_FILE",
            "PYTHONUNBUFFERED",
        }
    )
    entry = argv.index("--entrypoint")
    assert argv[entry + 1 : entry + 5] == ["python", "img:1", "-m", "steps.hpo"]
    assert argv[argv.index("--tokenized-dir") + 1] == "/tmp/inputs/tokenized"  # container paths as written
    assert "--memory" in argv  # the template's memory limit
    assert set(client_env) <= {"PATH", "HOME", "XDG_RUNTIME_DIR", "TMPDIR"}


def test_a_runner_that_may_not_change_the_group_runs_the_pod_as_the_folders_owner(
    podman, tmp_path, monkeypatch
):
    local = tmp_path / ".local"
    task_dir = local / "runs" / "r" / "tasks" / "hpo"
    (task_dir / "fs" / "tmp").mkdir(parents=True)
    engine = Engine("podman", local, {}, [])
    monkeypatch.setattr(engine_run, "grant_fs_group", lambda folders, gid: False)
    mounts = engine_run.mounts(engine, task_dir / "fs", {}, set())
    pod = {"runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001, "runAsNonRoot": True}
    argv = engine_run.step_argv(
        engine, {}, ["true"], [], image="img:1", env={}, volume_mounts=mounts, name="n", pod_security=pod
    )
    owner = local.stat()
    assert _flag_values(argv, "--user") == [f"{owner.st_uid}:{owner.st_gid}"]


def test_grant_fs_group_makes_a_tree_group_writable(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("changing a file's group to another than one's own needs root")
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "f").write_text("x")
    (tmp_path / "a" / "link").symlink_to("/etc/hostname")
    assert containers.grant_fs_group([tmp_path / "a"], 10001)
    for path in (tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "f"):
        st = path.stat()
        assert st.st_gid == 10001 and st.st_mode & stat.S_IWGRP, path
    assert Path("/etc/hostname").stat().st_gid != 10001  # links are not followed


def test_on_host_tasks_run_as_processes():
    engine = Engine("podman", Path("."), {}, on_host={"deploy"})
    assert engine.for_task("deploy", "deploy") is None
    assert engine.for_task("hpo", "hpo") is engine


@pytest.mark.parametrize("text", ["nocolon", "/x", "relative:/y:zz", "/does/not/exist:/y"])
def test_a_bad_volume_is_refused(text):
    with pytest.raises(WorkflowError):
        parse_volume(text)


@pytest.mark.parametrize(
    "args, says",
    [
        (["--engine", "bogus"], "one of process, podman, docker"),
        (["--volume", "/etc:/x"], "need --engine podman or docker"),
        (["--on-host", "deploy"], "need --engine podman or docker"),
    ],
)
def test_engine_options_are_checked_before_anything_runs(tmp_path, args, says):
    out = CliRunner().invoke(app, [str(WORKFLOW), "--local-dir", str(tmp_path / ".local"), *args])
    assert out.exit_code == 2, out.output
    assert says in out.output
    assert not list((tmp_path / ".local").glob("runs/*/tasks/*/fs"))  # no step ran
