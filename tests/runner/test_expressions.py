"""`when` (govaluate), `depends` and path-mapping rules, unit by unit."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.local_runner.cache import hash_path, parse_duration
from pipelines.local_runner.depends import evaluate_depends, handles_failure, referenced_tasks
from pipelines.local_runner.errors import WorkflowError
from pipelines.local_runner.expressions import evaluate_bool
from pipelines.local_runner.paths import PathMap
from pipelines.local_runner.substitution import substitute


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true == true", True),
        ("heads == heads", True),
        ("in-pod == rayjob", False),
        ("'in-pod' == 'in-pod'", True),
        ('"a b" != "a c"', True),
        ("5 > 3 && 2 < 1", False),
        ("5 > 3 && (2 < 1 || 1 == 1.0)", True),
        ("!(1 >= 2)", True),
        ("0.005 <= 0.01", True),
        ("false || !false", True),
        ("sqlite:////x/y.db != ''", True),
    ],
)
def test_when_expressions(text, expected):
    assert evaluate_bool(text) is expected


@pytest.mark.parametrize("text", ["", "== true", "(true", "a < b", "true &&"])
def test_malformed_when_is_an_error(text):
    with pytest.raises(WorkflowError):
        evaluate_bool(text)


def test_retry_expression_language():
    variables = {"lastRetry.exitCode": "2", "lastRetry.status": "Failed"}
    assert (
        evaluate_bool(
            "asInt(lastRetry.exitCode) != 2 or lastRetry.status == 'Error'", variables, bare_words=False
        )
        is False
    )
    assert evaluate_bool("asInt(lastRetry.exitCode) in [1, 2]", variables, bare_words=False) is True
    with pytest.raises(WorkflowError, match="unknown name"):
        evaluate_bool("lastRetry.exitcode == 2", variables, bare_words=False)


PHASES = {"a": "succeeded", "b": "skipped", "c": "failed", "d": "omitted", "e": "cached", "f": "errored"}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("a", True),
        ("b", True),  # plain name: Succeeded || Skipped || Daemoned
        ("c", False),
        ("e", True),  # a memoized hit is a success
        ("a.Succeeded && b.Skipped", True),
        ("b.Succeeded", False),
        ("c.Failed && !a.Failed", True),
        ("(a.Failed || c.Completed) && d.Omitted", True),
        ("f.Errored && !f.Failed", True),
        ("a.AnySucceeded || c.AllFailed", True),
        ("c || d", False),
    ],
)
def test_depends_semantics(expression, expected):
    assert evaluate_depends(expression, PHASES) is expected


def test_depends_helpers():
    assert referenced_tasks("(a.Succeeded || b) && !c-d.Failed") == ["a", "b", "c-d"]
    assert handles_failure("a && b.Failed", "b") and not handles_failure("a && b.Failed", "a")


def test_path_mapping_rewrites_declared_paths_their_children_and_parents(tmp_path: Path):
    paths = PathMap(tmp_path, ["/tmp/result/version", "/tmp/outputs/data", "/tmp/in.yaml"])
    root = str(tmp_path)
    assert paths.rewrite("/tmp/outputs/data") == f"{root}/tmp/outputs/data"
    assert (
        paths.rewrite("/tmp/result/result.json") == f"{root}/tmp/result/result.json"
    )  # next to a declared file
    assert paths.rewrite("--x=/tmp/outputs/data/sub/f.txt") == f"--x={root}/tmp/outputs/data/sub/f.txt"
    assert (
        paths.rewrite("mkdir -p /tmp/result && cat /tmp/in.yaml")
        == f"mkdir -p {root}/tmp/result && cat {root}/tmp/in.yaml"
    )
    # unrelated paths, the bare /tmp parent, URLs and sqlite URIs stay as they are
    for text in (
        "/tmp",
        "/tmp/other",
        "/usr/bin/env",
        "http://host/tmp/result",
        "sqlite:////tmp/result/x.db",
        "/tmp/elsewhere/data",
    ):
        assert paths.rewrite(text) == text


def test_substitution_reports_unresolved_names():
    assert substitute("{{ a.b }}-{{c}}", {"a.b": "1", "c": "2"}, "here") == "1-2"
    with pytest.raises(WorkflowError, match=r"here: cannot resolve \{\{tasks.x.outputs.result\}\}"):
        substitute("{{tasks.x.outputs.result}}", {}, "here")
    with pytest.raises(WorkflowError, match="here: expression 'sprig.trim\\(x\\)': unknown name 'x'"):
        substitute("{{=sprig.trim(x)}}", {}, "here")
    assert (
        substitute("[{{= sprig.trim(inputs.parameters.x) }}]", {"inputs.parameters.x": " a "}, "h") == "[a]"
    )


def test_durations_and_content_hashes(tmp_path: Path):
    assert parse_duration("1m30s") == 90 and parse_duration("100ms") == 0.1 and parse_duration(5) == 5
    assert parse_duration("720h") == 720 * 3600 and parse_duration(None) is None
    with pytest.raises(ValueError):
        parse_duration("5 minutes")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x").write_text("1")
    before = hash_path(tmp_path / "a")
    (tmp_path / "a" / "x").write_text("2")
    assert hash_path(tmp_path / "a") != before
