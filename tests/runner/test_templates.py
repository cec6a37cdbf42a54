"""Steps and DAG templates, loops, exit handlers, failFast, target, expressions and retries, as Argo
runs them."""

from __future__ import annotations

import json

import yaml

from tests.runner.conftest import write_workflow

HEADER = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {generateName: t-}
spec:
"""
ECHO = """
  - name: echo
    inputs: {parameters: [{name: msg}]}
    container: {image: busybox, command: [echo, "{{inputs.parameters.msg}}"]}
  - name: fail
    container: {image: busybox, command: [sh, -c, "exit 3"]}
"""


def _run(run_workflow, tmp_path, body: str, *args: str):
    doc = yaml.safe_load(HEADER + body + ECHO)
    return run_workflow(write_workflow(tmp_path, doc), *args)


def test_steps_groups_when_continue_on_and_loops(run_workflow, tmp_path):
    out = _run(
        run_workflow,
        tmp_path,
        """
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {name: fail, template: fail, continueOn: {failed: true}}
      - name: items
        template: echo
        arguments: {parameters: [{name: msg, value: "{{item.n}}-{{item.c}}"}]}
        withItems: [{n: 1, c: red}, {n: 2, c: blue}]
    - - name: param
        template: echo
        arguments: {parameters: [{name: msg, value: "p{{item}}"}]}
        withParam: "{{steps.items.outputs.result}}"
      - name: seq
        template: echo
        arguments: {parameters: [{name: msg, value: "{{item}}"}]}
        withSequence: {start: "2", end: "4", format: "n%02d"}
      - name: skipped
        template: echo
        when: "{{steps.fail.exitCode}} != 3"
        arguments: {parameters: [{name: msg, value: never}]}
    - - name: last
        template: echo
        arguments: {parameters: [{name: msg, value: "{{steps.fail.status}} {{steps.seq.outputs.result}}"}]}
""",
    )
    assert out.exit_code == 0, out.output
    tasks = out.state["tasks"]
    assert tasks["fail"]["phase"] == "failed"  # continueOn.failed: the steps go on
    assert tasks['items(0:{"c":"red","n":1})']["result"] == "1-red"
    assert tasks["param(1:2-blue)"]["result"] == "p2-blue"
    assert [tasks[f"seq({i}:n0{i + 2})"]["result"] for i in range(3)] == ["n02", "n03", "n04"]
    assert tasks["skipped"]["phase"] == "skipped"
    assert tasks["last"]["result"] == 'Failed ["n02","n03","n04"]'


def test_failed_step_stops_later_groups(run_workflow, tmp_path):
    out = _run(
        run_workflow,
        tmp_path,
        """
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {name: fail, template: fail}
      - {name: beside, template: echo, arguments: {parameters: [{name: msg, value: x}]}}
    - - {name: after, template: echo, arguments: {parameters: [{name: msg, value: y}]}}
""",
    )
    assert out.exit_code == 1
    assert out.phase("beside") == "succeeded"  # a group runs to its end
    assert "after" not in out.state["tasks"]
    assert out.task("fail")["exit_code"] == 3


def test_exit_handler_sees_status_and_failures_and_hooks_run(run_workflow, tmp_path):
    out = _run(
        run_workflow,
        tmp_path,
        """
  entrypoint: main
  onExit: report
  templates:
  - name: main
    dag:
      tasks:
      - name: a
        template: fail
        hooks: {exit: {template: echo, arguments: {parameters: [{name: msg, value: "a={{tasks.a.status}}"}]}}}
  - name: report
    steps:
    - - name: status
        template: echo
        arguments: {parameters: [{name: msg, value: "{{workflow.status}}"}]}
      - name: failures
        template: echo
        arguments: {parameters: [{name: msg, value: "{{workflow.failures}}"}]}
      - name: only-on-success
        template: echo
        when: "{{workflow.status}} == Succeeded"
        arguments: {parameters: [{name: msg, value: x}]}
""",
    )
    assert out.exit_code == 1
    tasks = out.state["tasks"]
    assert tasks["a.onExit"]["result"] == "a=Failed"
    assert tasks["onExit.status"]["result"] == "Failed"
    failures = json.loads(tasks["onExit.failures"]["result"])
    assert [(f["displayName"], f["phase"]) for f in failures] == [("a", "Failed")]
    assert tasks["onExit.only-on-success"]["phase"] == "skipped"


def test_dag_target_and_fail_fast_false(run_workflow, tmp_path):
    body = """
  entrypoint: main
  templates:
  - name: main
    dag:
      target: C
      failFast: false
      tasks:
      - {name: A, template: fail}
      - {name: B, template: echo, arguments: {parameters: [{name: msg, value: b}]}}
      - {name: C, depends: B, template: echo, arguments: {parameters: [{name: msg, value: c}]}}
      - {name: D, depends: C, template: echo, arguments: {parameters: [{name: msg, value: d}]}}
"""
    out = _run(run_workflow, tmp_path, body)
    assert out.exit_code == 0, out.output
    assert set(out.state["tasks"]) == {"B", "C"}  # only the target and what it needs
    out = _run(run_workflow, tmp_path, body.replace("target: C", "target: A C"))
    assert out.exit_code == 1
    assert out.phase("C") == "succeeded"  # failFast false: the rest still runs after A fails
    out = _run(run_workflow, tmp_path, body.replace("target: C", "target: A C").replace("false", "true"))
    assert out.phase("A") == "failed"


def test_expressions_and_dag_output_expression(run_workflow, tmp_path):
    out = _run(
        run_workflow,
        tmp_path,
        """
  entrypoint: main
  arguments: {parameters: [{name: cfg, value: '{"xs": [3, 4]}'}]}
  templates:
  - name: main
    steps:
    - - name: inner
        template: inner
    - - name: show
        template: echo
        arguments: {parameters: [{name: msg, value: "{{steps.inner.outputs.parameters.pick}}"}]}
  - name: inner
    dag:
      tasks:
      - name: sum
        template: echo
        arguments:
          parameters:
          - {name: msg, value: "{{=sprig.add(jsonpath(workflow.parameters.cfg, '$.xs[0]'), 1) * 2}}"}
      - name: never
        template: echo
        when: "{{=false}}"
        arguments: {parameters: [{name: msg, value: x}]}
    outputs:
      parameters:
      - name: pick
        valueFrom:
          expression: "tasks.never.status == 'Skipped' ? 'sum=' + tasks.sum.outputs.result : 'no'"
""",
    )
    assert out.exit_code == 0, out.output
    assert out.task("inner.sum")["result"] == "8"
    assert out.task("show")["result"] == "sum=8"


def test_retry_expression_on_exit_code_75_with_backoff(run_workflow, tmp_path):
    marker = tmp_path / "attempts"
    body = f"""
  entrypoint: flaky
  templates:
  - name: flaky
    retryStrategy:
      limit: 3
      retryPolicy: OnFailure
      expression: "lastRetry.exitCode == '75'"
      backoff: {{duration: 200ms, factor: 2}}
    container:
      image: busybox
      command: [sh, -c]
      args: ["echo x >> {marker}; n=$(wc -l < {marker}); [ $n -ge 3 ] && exit 0; exit CODE"]
"""
    out = _run(run_workflow, tmp_path, body.replace("CODE", "75"))
    assert out.exit_code == 0, out.output
    assert out.task("flaky")["attempts"] == 3
    marker.unlink()
    out = _run(run_workflow, tmp_path, body.replace("CODE", "1"))  # not transient: no retry
    assert out.exit_code == 1 and out.task("flaky")["attempts"] == 1
    marker.unlink()
    typed = body.replace("CODE", "75").replace("lastRetry.exitCode == '75'", "lastRetry.exitCode == 75")
    out = _run(run_workflow, tmp_path, typed)  # a string never equals a number in expr-lang
    assert out.exit_code == 1 and out.task("flaky")["attempts"] == 1


def test_unknown_expression_function_is_refused_before_running(run_workflow, tmp_path):
    out = _run(
        run_workflow,
        tmp_path,
        """
  entrypoint: flaky
  templates:
  - name: flaky
    retryStrategy: {limit: 1, expression: "asString(lastRetry.exitCode) == '75'"}
    container: {image: busybox, command: [sh, -c, "exit 1"]}
""",
    )
    assert out.exit_code == 2 and out.latest is None
    assert "function asString() is not in Argo's expression environment" in " ".join(out.output.split())


def test_template_parallelism_limits_its_children(run_workflow, tmp_path):
    log = tmp_path / "order"
    out = _run(
        run_workflow,
        tmp_path,
        f"""
  entrypoint: main
  templates:
  - name: main
    parallelism: 1
    steps:
    - - name: item
        template: mark
        arguments: {{parameters: [{{name: i, value: "{{{{item}}}}"}}]}}
        withItems: [a, b, c]
  - name: mark
    inputs: {{parameters: [{{name: i}}]}}
    container:
      image: busybox
      command: [sh, -c, "echo start >> {log}; sleep 0.2; echo end >> {log}"]
""",
    )
    assert out.exit_code == 0, out.output
    assert log.read_text().split() == ["start", "end"] * 3  # one at a time


def test_empty_retry_strategy_retries_until_success(run_workflow, tmp_path):
    marker = tmp_path / "n"
    out = _run(
        run_workflow,
        tmp_path,
        f"""
  entrypoint: flaky
  templates:
  - name: flaky
    retryStrategy: {{}}
    container:
      image: busybox
      command: [sh, -c, "echo x >> {marker}; [ $(wc -l < {marker}) -ge 4 ]"]
""",
    )
    assert out.exit_code == 0, out.output
    assert out.task("flaky")["attempts"] == 4


def test_loop_parameters_aggregate_and_skipped_outputs_fall_back(run_workflow, tmp_path):
    out = _run(
        run_workflow,
        tmp_path,
        """
  entrypoint: main
  templates:
  - name: main
    dag:
      tasks:
      - name: gen
        template: gen
        arguments: {parameters: [{name: n, value: "{{item}}"}]}
        withItems: [1, 2]
      - name: each
        depends: gen
        template: echo
        arguments: {parameters: [{name: msg, value: "{{item.double}}"}]}
        withParam: "{{tasks.gen.outputs.parameters}}"
      - {name: skipped, template: gen, when: "false", arguments: {parameters: [{name: n, value: "0"}]}}
      - name: after-skip
        depends: skipped
        template: echo
        arguments: {parameters: [{name: msg, value: "{{tasks.skipped.outputs.parameters.double}}"}]}
      - name: default-input
        depends: skipped
        template: takes-default
        arguments: {parameters: [{name: v, value: "{{tasks.skipped.outputs.parameters.missing}}"}]}
  - name: gen
    inputs: {parameters: [{name: n}]}
    container: {image: busybox, command: [sh, -c, "expr {{inputs.parameters.n}} \\\\* 2 > /tmp/d"]}
    outputs:
      parameters:
      - {name: double, valueFrom: {path: /tmp/d, default: "none"}}
  - name: takes-default
    inputs: {parameters: [{name: v, default: fallback}]}
    container: {image: busybox, command: [echo, "{{inputs.parameters.v}}"]}
""",
    )
    assert out.exit_code == 0, out.output
    tasks = out.state["tasks"]
    each = sorted(n for n in tasks if n.startswith("each("))
    assert [tasks[n]["result"] for n in each] == ["2", "4"]
    folders = [p.name for p in (out.run_dir / "tasks").iterdir()]
    assert all("(" not in f and ":" not in f for f in folders), folders  # shell-safe, used in commands
    assert tasks["after-skip"]["result"] == "none"  # a skipped task's outputs are their defaults
    assert tasks["default-input"]["result"] == "fallback"  # an unsupplied argument: the input default
