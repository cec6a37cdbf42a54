"""`when` conditions, skip propagation and `depends` expressions on a purpose-built DAG."""

from __future__ import annotations


def test_when_and_depends_follow_argo_semantics(run_workflow):
    out = run_workflow("conditions.yaml")
    assert out.exit_code == 0, out.output
    phases = {name: t["phase"] for name, t in out.state["tasks"].items()}
    assert phases == {
        "flip": "succeeded",
        "heads": "succeeded",  # bare string compare after substitution
        "tails": "skipped",  # quoted string compare
        "after-tails": "succeeded",  # plain `tails` is satisfied by a skipped task
        "only-if-tails-succeeded": "omitted",
        "cluster-only": "skipped",  # a resource template is fine when `when` skips it
        "big-count": "succeeded",  # numbers, &&, ||, !, parentheses
        "boom": "failed",
        "on-boom-failed": "succeeded",
        "on-boom-succeeded": "omitted",
        "combined": "succeeded",
        "legacy": "succeeded",  # `dependencies: [heads, after-tails]`
    }
    # boom's failure is handled by `boom.Failed`, so the run succeeds
    assert out.state["phase"] == "succeeded"


def test_flip_to_tails_reverses_the_branches(run_workflow):
    out = run_workflow("conditions.yaml", "--param", "side=tails", "--param", "count=12")
    phases = {name: t["phase"] for name, t in out.state["tasks"].items()}
    assert phases["heads"] == "skipped"
    assert phases["tails"] == phases["only-if-tails-succeeded"] == "succeeded"
    assert phases["big-count"] == "skipped"  # 12 >= 10
    # boom depends on `heads`, which was skipped: it still runs (Argo's plain-name semantics)
    assert phases["boom"] == "failed"


def test_resource_template_that_is_not_skipped_is_refused_before_running(run_workflow):
    out = run_workflow("conditions.yaml", "--param", "runner=cluster")
    assert out.exit_code == 2, out.output
    text = " ".join(out.output.split())
    assert "task 'cluster-only'" in text and "resource templates cannot run locally" in text
    assert out.latest is None  # nothing ran
