"""No workflow field is both unimplemented and silently ignored: walk the whole Argo schema and
prove each field reachable from a Workflow is implemented, declared without local effect, or
refused by name before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.argo_schema import _argo_schema, schemas_dir
from pipelines.local_runner.refusals import (
    ARGO,
    IMPLEMENTED,
    NO_LOCAL_EFFECT,
    OUTPUT_ONLY,
    REFUSED_WHEN_REACHED,
    allowed,
    child_definitions,
    short,
    walk,
)
from pipelines.local_runner.workflow import load_workflow

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(
    not (schemas_dir() / "argo-workflows" / "schema.json").is_file(),
    reason=f"Argo schema not found under {schemas_dir()} (set EMOTION_SCHEMAS_DIR)",
)


@pytest.fixture(scope="module")
def definitions() -> dict:
    return _argo_schema()["definitions"]


def _reachable(definitions: dict) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """(definition, property) -> the path of (property, shape) steps that reaches it from a Workflow.

    Only implemented fields are descended into, as the runner does; the first path found is kept.
    """
    found: dict[tuple[str, str], list[tuple[str, str]]] = {}
    queue: list[tuple[str, list[tuple[str, str]]]] = [(ARGO + "Workflow", [])]
    seen: set[str] = set()
    while queue:
        definition, path = queue.pop(0)
        if definition in seen:
            continue
        seen.add(definition)
        schema = definitions[definition]
        if schema.get("type") == "array":  # ParallelSteps: a list of steps
            queue.append((schema["items"]["$ref"].rsplit("/", 1)[1], path + [("", "list")]))
            continue
        for prop, sub_schema in (schema.get("properties") or {}).items():
            found.setdefault((definition, prop), path)
            sub, shape = child_definitions(sub_schema)
            here = ".".join(p for p, _ in path + [(prop, shape)]) + "."
            if sub is not None and allowed(definition, prop, here) == "implemented":
                queue.append((sub, path + [(prop, shape)]))
    return found


def _document(path: list[tuple[str, str]], prop: str) -> tuple[dict, str]:
    """A Workflow with only the fields along `path`, ending in `prop`: "x"; and its dotted path."""
    leaf: dict = {prop: "x"}
    node = leaf
    for name, shape in reversed(path):
        node = [node] if shape == "list" else ({"k": node} if shape == "map" else node)
        if name:
            node = {name: node}
    doc = node
    dotted = []
    for name, shape in path:
        if name:
            dotted.append(name)
        if shape == "list":
            dotted[-1] += "[0]"
        elif shape == "map":
            dotted.append("k")
    return doc, ".".join(dotted + [prop])


def test_every_listed_field_exists_in_the_schema(definitions):
    by_short = {short(d): d for d in definitions}
    for table in (IMPLEMENTED, NO_LOCAL_EFFECT, OUTPUT_ONLY, REFUSED_WHEN_REACHED):
        for name, props in table.items():
            assert name in by_short, name
            known = set(definitions[by_short[name]].get("properties") or {})
            assert props <= known, (name, props - known)


def test_no_reachable_field_is_unimplemented_and_unrefused(definitions):
    reachable = _reachable(definitions)
    assert len(reachable) > 300  # the walk covers the schema, not a corner of it
    refused = 0
    for (definition, prop), path in reachable.items():
        doc, dotted = _document(path, prop)
        hits = [p for p, _, _ in walk(doc, ARGO + "Workflow", definitions)]
        verdict = allowed(definition, prop, dotted)
        if verdict is None:
            refused += 1
            assert dotted in hits, (
                f"{short(definition)}.{prop} at {dotted} is neither implemented nor refused"
            )
        else:
            assert hits == [], f"{short(definition)}.{prop} ({verdict}) at {dotted} was refused: {hits}"
    assert refused > 100


def test_a_field_added_later_is_refused(definitions):
    patched = dict(definitions)
    template = dict(patched[ARGO + "Template"])
    template["properties"] = {**template["properties"], "quantumEntangle": {"type": "boolean"}}
    patched[ARGO + "Template"] = template
    doc = {"spec": {"templates": [{"name": "t", "quantumEntangle": True}]}}
    assert [p for p, _, _ in walk(doc, ARGO + "Workflow", patched)] == ["spec.templates[0].quantumEntangle"]


def test_input_artifact_storage_is_refused_output_storage_is_not(definitions):
    doc = {
        "spec": {
            "templates": [
                {
                    "name": "t",
                    "inputs": {"artifacts": [{"name": "a", "path": "/a", "s3": {"key": "k"}}]},
                    "outputs": {"artifacts": [{"name": "b", "path": "/b", "s3": {"key": "k"}}]},
                }
            ]
        }
    }
    assert [p for p, _, _ in walk(doc, ARGO + "Workflow", definitions)] == [
        "spec.templates[0].inputs.artifacts[0].s3"
    ]


def test_the_project_workflows_are_not_refused():
    for path in [
        ROOT / "pipelines" / "emotion-hpo.yaml",
        *sorted((Path(__file__).parent / "workflows").glob("*.yaml")),
    ]:
        load_workflow(path)  # raises UnsupportedFeature on a refused field


def test_refusal_names_the_field_and_nothing_runs(run_workflow, tmp_path):
    from tests.runner.conftest import write_workflow

    doc = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"generateName": "r-"},
        "spec": {
            "entrypoint": "main",
            "templates": [
                {
                    "name": "main",
                    "container": {
                        "image": "busybox",
                        "command": ["echo"],
                        "envFrom": [{"secretRef": {"name": "s"}}],
                    },
                }
            ],
        },
    }
    out = run_workflow(write_workflow(tmp_path, doc))
    assert out.exit_code == 2 and out.latest is None
    text = " ".join(out.output.split())
    assert (
        "spec.templates[0].container.envFrom (k8s.Container.envFrom) is not supported by the local runner"
        in text
    )
