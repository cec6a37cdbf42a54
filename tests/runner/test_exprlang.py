"""expr-lang as Argo evaluates it: typing, laziness, closures, Argo's and sprig's functions."""

from __future__ import annotations

import pytest

from pipelines.local_runner.errors import UnsupportedFeature
from pipelines.local_runner.exprlang import ExprError, evaluate, go_string, nest, parse

ENV = nest(
    {
        "lastRetry.exitCode": "75",
        "lastRetry.status": "Failed",
        "steps.flip.outputs.result": "heads",
        "steps.heads.outputs.result": "H",
        "workflow.parameters.cfg": '{"xs": [{"n": "a", "v": 1}, {"n": "b", "v": 2}]}',
    }
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("lastRetry.exitCode == '75'", True),
        ("lastRetry.exitCode == 75", False),  # a string never equals a number
        ("asInt(lastRetry.exitCode) == 75 && lastRetry.status != 'Error'", True),
        ("string(lastRetry.exitCode) in ['75', '76']", True),
        (
            "steps['flip'].outputs.result == 'heads' ? steps.heads.outputs.result : steps.tails.outputs.x",
            "H",
        ),
        ("steps.tails.outputs.result ?? 'none'", "none"),  # a skipped step's outputs are nil
        ("false && undefinedName", False),  # lazy
        ("7 / 2", 3.5),
        ("1 + 2 * 3 ** 2", 19.0),
        ("map(filter([1, 2, 3, 4], {# % 2 == 0}), {# * 10})", [20, 40]),
        ("jsonpath(workflow.parameters.cfg, '$.xs[?(@.v > 1)].n')", ["b"]),
        ("jsonpath(workflow.parameters.cfg, '$.xs[0].v')", 1),
        ("sprig.trim('  x ') + sprig.upper('y')", "xY"),
        ("toJson({b: 1, a: [true, nil]})", '{"a":[true,null],"b":1}'),
        ("'abc' startsWith 'a' and not ('abc' contains 'z')", True),
    ],
)
def test_values(text, expected):
    assert evaluate(text, ENV) == expected


def test_rendering_as_argo_does():
    assert go_string(43.0) == "43" and go_string(35.8) == "35.8" and go_string(True) == "true"
    assert go_string([1, "a"]) == '[1,"a"]'


def test_errors_and_unknown_functions():
    with pytest.raises(ExprError, match="mismatched types"):
        evaluate("'a' < 1", ENV)
    with pytest.raises(ExprError, match="unknown name 'nope'"):
        evaluate("nope == 1", ENV)
    with pytest.raises(
        UnsupportedFeature, match=r"function asString\(\) is not in Argo's expression environment"
    ):
        parse("asString(lastRetry.exitCode) == '75'")
    with pytest.raises(UnsupportedFeature, match="sprig.date is not supported locally"):
        parse("sprig.date('2006', x)")
