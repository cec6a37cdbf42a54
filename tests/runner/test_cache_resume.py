"""Memoization across runs and resuming a failed run from the failed step."""

from __future__ import annotations


def _runs(work_dir) -> list[str]:
    path = work_dir / "runs.log"
    return path.read_text().split() if path.exists() else []


def test_unchanged_tasks_are_served_from_the_cache(run_workflow, work_dir):
    first = run_workflow("memoize.yaml", "--param", f"work-dir={work_dir}")
    assert first.exit_code == 0, first.output
    assert _runs(work_dir) == ["produce", "consume"]

    second = run_workflow("memoize.yaml", "--param", f"work-dir={work_dir}")
    assert second.exit_code == 0, second.output
    assert second.run_dir != first.run_dir
    assert second.phase("produce") == second.phase("consume") == "cached"
    assert _runs(work_dir) == ["produce", "consume"]  # nothing ran again
    assert second.task("produce")["parameters"] == {"echoed": "one"}
    assert second.task("consume")["parameters"] == {"seen": "one"}
    # the cached artifact is materialised in the new run's folder
    cached = second.run_dir / "tasks" / "produce" / "fs" / "tmp" / "outputs" / "data" / "sub" / "value.txt"
    assert cached.read_text() == "one"
    assert "⚡ produce: cached" in second.output


def test_changed_inputs_miss_the_cache(run_workflow, work_dir):
    run_workflow("memoize.yaml", "--param", f"work-dir={work_dir}")
    changed = run_workflow("memoize.yaml", "--param", f"work-dir={work_dir}", "--param", "value=two")
    assert changed.phase("produce") == "succeeded"
    # consume's key is constant; its input artifact's content changed, so it ran too
    assert changed.phase("consume") == "succeeded"
    assert changed.task("consume")["parameters"] == {"seen": "two"}
    assert _runs(work_dir) == ["produce", "consume", "produce", "consume"]


def test_no_cache_forces_a_rerun(run_workflow, work_dir):
    run_workflow("memoize.yaml", "--param", f"work-dir={work_dir}")
    forced = run_workflow("memoize.yaml", "--param", f"work-dir={work_dir}", "--no-cache")
    assert forced.phase("produce") == forced.phase("consume") == "succeeded"
    assert len(_runs(work_dir)) == 4


def test_resume_reruns_only_what_did_not_succeed(run_workflow, work_dir):
    failed = run_workflow("resume.yaml", "--param", f"work-dir={work_dir}")
    assert failed.exit_code == 1
    assert failed.state["phase"] == "failed"
    assert [failed.phase(t) for t in ("first", "gate", "last")] == ["succeeded", "failed", "omitted"]
    assert "--resume-last" in failed.output
    token = failed.task("first")["parameters"]["token"]

    (work_dir / "unblock").touch()
    resumed = run_workflow("resume.yaml", "--resume-last")
    assert resumed.exit_code == 0, resumed.output
    assert resumed.run_dir == failed.run_dir
    assert resumed.state["workflow_uid"] == failed.state["workflow_uid"]
    assert [resumed.phase(t) for t in ("first", "gate", "last")] == ["succeeded"] * 3
    # `first` did not run again; `last` used its output from the first run
    assert _runs(work_dir) == ["first", "gate", "gate", "last", token]


def test_resume_by_id_and_param_changes_are_refused(run_workflow, work_dir):
    failed = run_workflow("resume.yaml", "--param", f"work-dir={work_dir}")
    refused = run_workflow("resume.yaml", "--resume", failed.run_dir.name, "--param", "work-dir=/elsewhere")
    assert refused.exit_code == 2
    assert "cannot change a resumed run's parameters" in refused.output
    missing = run_workflow("resume.yaml", "--resume", "no-such-run")
    assert missing.exit_code == 2 and "no run state" in missing.output
