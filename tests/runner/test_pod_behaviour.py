"""What a step sees as Argo would give it: entrypoint arguments, inline templates, its own file
system and working directory, volumes, secrets from --values-dir, init containers and sidecars,
and deadlines that stop it on time (issue #20's bugs, one test each)."""

from __future__ import annotations

import signal
import subprocess
import threading

import psutil
import yaml

from pipelines.local_runner.process import ProcessGroups, run_attempt
from shared.processes import terminate_group
from tests.runner.conftest import write_workflow


def _wf(text: str) -> dict:
    return yaml.safe_load(text)


ARGUMENTS = _wf("""
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {generateName: args-}
spec:
  entrypoint: print
  arguments: {parameters: [{name: message, value: hello world}]}
  templates:
  - name: print
    inputs: {parameters: [{name: message}]}
    outputs: {parameters: [{name: said, valueFrom: {path: /tmp/said}}]}
    container:
      image: busybox
      command: [sh, -c]
      args: ["echo -n '{{inputs.parameters.message}}' > /tmp/said"]
""")


def test_spec_arguments_reach_the_entrypoint_inputs_and_param_overrides_them(run_workflow, tmp_path):
    path = write_workflow(tmp_path, ARGUMENTS)
    out = run_workflow(path)
    assert out.exit_code == 0, out.output
    assert out.task("print")["parameters"]["said"] == "hello world"
    out = run_workflow(path, "-p", "message=hi")
    assert out.exit_code == 0, out.output
    assert out.task("print")["parameters"]["said"] == "hi"


def test_inline_templates_run(run_workflow, tmp_path):
    doc = _wf("""
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {generateName: inline-}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - name: a
        inline:
          container: {image: busybox, command: [sh, -c], args: ["echo inline-ran"]}
""")
    out = run_workflow(write_workflow(tmp_path, doc))
    assert out.exit_code == 0, out.output
    assert out.task("a")["result"] == "inline-ran"


def test_relative_writes_stay_in_the_container_and_tmp_output_folders_exist(
    run_workflow, tmp_path, monkeypatch
):
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    monkeypatch.chdir(checkout)
    doc = _wf("""
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {generateName: fs-}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {name: relative, template: relative}
      - {name: tmpdir, template: tmpdir}
      - {name: workdir, template: workdir}
  - name: relative
    script: {image: python:3, command: [python], source: "open('result.txt', 'w').write('x')"}
    outputs: {artifacts: [{name: result, path: /result.txt}]}
  - name: tmpdir
    container: {image: busybox, command: [sh, -c], args: ["echo hi > /tmp/hello.txt"]}
    outputs: {artifacts: [{name: tmp, path: /tmp}]}
  - name: workdir
    container: {image: busybox, command: [sh, -c], args: ["pwd > here.txt"], workingDir: /src}
    outputs: {artifacts: [{name: here, path: /src/here.txt}]}
""")
    out = run_workflow(write_workflow(tmp_path, doc))
    assert out.exit_code == 0, out.output
    assert list(checkout.iterdir()) == []  # nothing written into the user's checkout
    fs = out.run_dir / "tasks"
    assert (fs / "relative" / "fs" / "result.txt").read_text() == "x"
    assert (fs / "tmpdir" / "fs" / "tmp" / "hello.txt").read_text() == "hi\n"
    here = fs / "workdir" / "fs" / "src"
    assert (here / "here.txt").read_text().strip() == str(here)


def test_volumes_secrets_init_containers_and_sidecars(run_workflow, tmp_path):
    values = tmp_path / "values"
    (values / "secrets" / "db").mkdir(parents=True)
    (values / "secrets" / "db" / "password").write_text("s3cret")
    (values / "configmaps" / "cfg").mkdir(parents=True)
    (values / "configmaps" / "cfg" / "mode").write_text("fast")
    doc = _wf("""
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {generateName: pod-}
spec:
  entrypoint: main
  volumes: [{name: shared, emptyDir: {}}]
  templates:
  - name: main
    steps:
    - - {name: write, template: write}
    - - {name: read, template: read}
  - name: write
    volumes: [{name: scratch, emptyDir: {}}, {name: creds, secret: {secretName: db}}]
    initContainers:
    - {name: init, image: busybox, command: [sh, -c], args: ["echo init > /scratch/init"],
       volumeMounts: [{name: scratch, mountPath: /scratch}]}
    sidecars:
    - {name: side, image: busybox, command: [sh, -c],
       args: ["echo side > /scratch/side; cut -d' ' -f4 /proc/self/stat > /scratch/pid;
              sleep 30; echo slept > /scratch/slept"],
       volumeMounts: [{name: scratch, mountPath: /scratch}]}
    container:
      image: busybox
      command: [sh, -c]
      args: ["sleep 0.5; cat /scratch/init /scratch/side /creds/password; echo $PW $MODE > /shared/out"]
      env:
      - {name: PW, valueFrom: {secretKeyRef: {name: db, key: password}}}
      - {name: MODE, valueFrom: {configMapKeyRef: {name: cfg, key: mode}}}
      volumeMounts:
      - {name: scratch, mountPath: /scratch}
      - {name: creds, mountPath: /creds}
      - {name: shared, mountPath: /shared}
  - name: read
    container:
      image: busybox
      command: [sh, -c]
      args: ["cat /shared/out"]
      volumeMounts: [{name: shared, mountPath: /shared}]
""")
    path = write_workflow(tmp_path, doc)
    out = run_workflow(path, "--values-dir", str(values))
    assert out.exit_code == 0, out.output
    scratch = out.run_dir / "tasks" / "write" / "volumes" / "scratch"
    # the sidecar was stopped when the main container ended: gone, and before its sleep was over
    assert not psutil.pid_exists(int((scratch / "pid").read_text()))
    assert not (scratch / "slept").exists()
    assert out.task("write")["result"] == "init\nside\ns3cret"
    assert out.task("read")["result"] == "s3cret fast"
    missing = run_workflow(path)  # without the values folder: refused by name, not a dropped secret
    assert missing.exit_code == 2
    assert "env PW: secretKeyRef db/password is not available locally" in " ".join(missing.output.split())


def test_deadline_and_timeout_stop_the_step_on_time(run_workflow, tmp_path):
    doc = _wf("""
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {generateName: deadline-}
spec:
  entrypoint: main
  templates:
  - name: main
    dag:
      tasks:
      - {name: deadline, template: deadline}
      - {name: timeout, template: timeout}
  - name: deadline
    activeDeadlineSeconds: 1
    container: {image: busybox, command: [sleep, "30"]}
  - name: timeout
    timeout: 1s
    container: {image: busybox, command: [sh, -c, "sleep 30"]}
""")
    out = run_workflow(write_workflow(tmp_path, doc))
    assert out.exit_code == 1
    assert "exceeded activeDeadlineSeconds (1s)" in out.task("deadline")["message"]
    assert "exceeded timeout (1s)" in out.task("timeout")["message"]
    # stopped by the deadline's SIGTERM: neither slept to its end (0) nor waited for the SIGKILL
    assert out.task("deadline")["exit_code"] == out.task("timeout")["exit_code"] == -signal.SIGTERM


def test_a_timed_out_attempt_is_stopped_by_sigterm(tmp_path):
    attempt = run_attempt(
        ["sleep", "30"], {"PATH": "/usr/bin:/bin"}, tmp_path, tmp_path / "log", ProcessGroups(), 0.3
    )
    assert attempt.status == "Failed" and attempt.message == "exceeded activeDeadlineSeconds (0.3s)"
    assert attempt.exit_code == -signal.SIGTERM


def test_terminating_reaps_the_leader_at_once():
    """A leader that exits on SIGTERM is reaped while waiting: its zombie would keep the group
    "alive" until the grace time (here far longer than the deadline polled for) ran out."""
    leader = subprocess.Popen(["sleep", "30"], start_new_session=True)
    stopper = threading.Thread(target=terminate_group, args=(leader.pid, 600.0, leader), daemon=True)
    stopper.start()
    stopper.join(timeout=60)
    assert not stopper.is_alive(), "terminate_group waited for its grace time"
    assert leader.returncode == -signal.SIGTERM


def test_workflow_deadline_stops_the_run(run_workflow, tmp_path):
    doc = _wf("""
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {generateName: wf-deadline-}
spec:
  entrypoint: sleep
  activeDeadlineSeconds: 1
  templates:
  - name: sleep
    container: {image: busybox, command: [sleep, "30"]}
""")
    out = run_workflow(write_workflow(tmp_path, doc))
    assert out.exit_code == 1 and out.state["phase"] == "failed"
    assert out.phase("sleep") == "interrupted" and out.task("sleep")["exit_code"] == -signal.SIGTERM
