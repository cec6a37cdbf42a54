"""Dependency order, parallel branches, parameter and artifact passing, path mapping."""

from __future__ import annotations

from pathlib import Path

from tests.runner.conftest import write_workflow


def _times(work_dir: Path, label: str) -> tuple[float, float]:
    return float((work_dir / f"{label}.start").read_text()), float((work_dir / f"{label}.end").read_text())


def test_diamond_runs_in_order_with_parallel_branches(run_workflow, work_dir):
    out = run_workflow("diamond.yaml", "--param", f"marker-dir={work_dir}", "--param", "sleep=1")
    assert out.exit_code == 0, out.output
    state = out.state
    assert state["phase"] == "succeeded"
    tasks = state["tasks"]
    assert all(t["phase"] == "succeeded" for t in tasks.values())
    # b and c start only after a finished, d only after both
    for branch in ("b", "c"):
        assert tasks[branch]["started_at"] >= tasks["a"]["finished_at"]
        assert tasks["d"]["started_at"] >= tasks[branch]["finished_at"]
    # independent branches overlap in time (each sleeps 1s between its markers)
    b_start, b_end = _times(work_dir, "b")
    c_start, c_end = _times(work_dir, "c")
    assert b_start < c_end and c_start < b_end


def test_parameters_and_artifacts_flow_between_tasks(run_workflow, work_dir):
    out = run_workflow(
        "diamond.yaml",
        "--param",
        f"marker-dir={work_dir}",
        "--param",
        "sleep=0",
        "--param",
        "greeting=bonjour",
    )
    assert out.exit_code == 0, out.output
    tasks = out.state["tasks"]
    assert tasks["a"]["parameters"] == {"word": "bonjour"}  # read from the file, trailing newline dropped
    assert tasks["b"]["parameters"] == {"text": "b-bonjour"}  # via the input artifact's file
    assert tasks["d"]["parameters"] == {"joined": "b-bonjour+c-bonjour:bonjour:bonjour"}
    assert tasks["a"]["result"] == f"uid={out.state['workflow_uid']}"  # stdout is outputs.result


def test_container_paths_are_mapped_into_the_run_folder(run_workflow, work_dir):
    out = run_workflow("diamond.yaml", "--param", f"marker-dir={work_dir}", "--param", "sleep=0")
    assert out.exit_code == 0, out.output
    fs = out.run_dir / "tasks" / "a" / "fs"
    assert (fs / "tmp" / "outputs" / "data" / "word.txt").read_text() == "hello"
    assert (fs / "tmp" / "result" / "word").is_file()  # `mkdir -p /tmp/result` (a parent folder) was mapped
    assert out.state["tasks"]["a"]["artifacts"]["data"] == str(fs / "tmp" / "outputs" / "data")
    # the input artifact of b is the output of a, linked in place
    linked = out.run_dir / "tasks" / "b" / "fs" / "tmp" / "inputs" / "data"
    assert (linked / "word.txt").read_text() == "hello"
    log = (out.run_dir / "logs" / "a.log").read_text()
    assert str(fs) in log and "attempt 1" in log


def test_non_tty_output_is_plain_lines_and_summary_is_written(run_workflow, work_dir):
    out = run_workflow("diamond.yaml", "--param", f"marker-dir={work_dir}", "--param", "sleep=0")
    assert "✔ d: succeeded" in out.output
    assert "\x1b[" not in out.output  # no live-display escape codes when not a terminal
    summary = (out.run_dir / "summary.json").read_text()
    assert '"phase": "succeeded"' in summary


def _one_step(outputs: list[dict]) -> dict:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"generateName": "outputs-"},
        "spec": {
            "entrypoint": "step",
            "templates": [
                {
                    "name": "step",
                    "outputs": {"parameters": outputs},
                    "container": {
                        "image": "busybox",
                        "command": ["sh", "-c", "mkdir -p /tmp/r && echo 1 > /tmp/r/other"],
                    },
                }
            ],
        },
    }


def test_missing_output_parameter_fails_naming_what_was_written(run_workflow, tmp_path):
    out = run_workflow(
        write_workflow(tmp_path, _one_step([{"name": "wanted", "valueFrom": {"path": "/tmp/r/wanted"}}]))
    )
    assert out.exit_code == 1
    assert (
        out.task("step")["message"]
        == "output parameter 'wanted': /tmp/r/wanted was not written (found there: other)"
    )


def test_missing_output_parameter_with_default(run_workflow, tmp_path):
    outputs = [{"name": "wanted", "valueFrom": {"path": "/tmp/r/wanted", "default": "fallback"}}]
    out = run_workflow(write_workflow(tmp_path, _one_step(outputs)))
    assert out.exit_code == 0, out.output
    assert out.task("step")["parameters"] == {"wanted": "fallback"}
