"""Bad input is refused before anything runs: schema, parameters, cycles, unknown references (exit 2)."""

from __future__ import annotations

import copy

import pytest

from tests.runner.conftest import load_fixture, write_workflow


@pytest.fixture
def diamond() -> dict:
    return copy.deepcopy(load_fixture("diamond.yaml"))


def _tasks(doc: dict) -> dict:
    main = next(t for t in doc["spec"]["templates"] if t["name"] == "main")
    return {t["name"]: t for t in main["dag"]["tasks"]}


def _refused(out, *needles: str) -> None:
    assert out.exit_code == 2, out.output
    text = " ".join(out.output.split())  # the error may be wrapped to the terminal width
    for needle in needles:
        assert needle in text, text
    assert out.latest is None  # nothing ran, no run folder


def test_undeclared_parameter_lists_the_declared_ones(run_workflow):
    out = run_workflow("diamond.yaml", "--param", "colour=blue")
    _refused(out, "unknown parameter(s) colour", "greeting, marker-dir, sleep")


def test_parameter_outside_its_enum_and_malformed_param(run_workflow):
    _refused(
        run_workflow("conditions.yaml", "--param", "runner=mars"),
        "runner='mars' is not one of local, cluster",
    )
    _refused(run_workflow("diamond.yaml", "--param", "greeting"), "expected NAME=VALUE")


def test_parameter_without_default_must_be_given(run_workflow):
    _refused(run_workflow("resume.yaml"), "work-dir have no default")


def test_cycle_is_reported_with_its_path(run_workflow, tmp_path, diamond):
    _tasks(diamond)["a"]["depends"] = "d"
    out = run_workflow(write_workflow(tmp_path, diamond))
    _refused(out, "dependency cycle:")
    assert any(c in out.output for c in ("a -> d -> b -> a", "a -> d -> c -> a", "d -> b -> a -> d"))


def test_unknown_template_and_unknown_task(run_workflow, tmp_path, diamond):
    bad_template = copy.deepcopy(diamond)
    _tasks(bad_template)["d"]["template"] = "jion"
    _refused(run_workflow(write_workflow(tmp_path, bad_template, "t.yaml")), "unknown template 'jion'")
    bad_task = copy.deepcopy(diamond)
    _tasks(bad_task)["d"]["depends"] = "b && e"
    _refused(run_workflow(write_workflow(tmp_path, bad_task, "u.yaml")), "depends on unknown task 'e'")


def test_output_reference_without_dependency(run_workflow, tmp_path, diamond):
    _tasks(diamond)["c"]["depends"] = ""
    _tasks(diamond)["c"]["arguments"].pop("artifacts")
    out = run_workflow(write_workflow(tmp_path, diamond))
    _refused(out, "task 'c' uses {{tasks.a.outputs.parameters.word}} but does not depend on 'a'")


def test_schema_errors_name_the_field(run_workflow, tmp_path, diamond):
    produce = next(t for t in diamond["spec"]["templates"] if t["name"] == "produce")
    produce["retryStrategy"] = {"limt": 3}
    out = run_workflow(write_workflow(tmp_path, diamond))
    _refused(out, "is not a valid Argo Workflow", "retryStrategy", "'limt'")


def test_not_a_workflow(run_workflow, tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("kind: Pod\napiVersion: v1\n")
    _refused(run_workflow(path), "kind 'Pod' is not one of")
    path.write_text("a: [\n")
    _refused(run_workflow(path), "is not valid YAML")
    _refused(run_workflow(tmp_path / "missing.yaml"), "not found")
