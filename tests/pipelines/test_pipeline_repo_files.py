"""Offline checks of the GitHub Actions workflows and the Dockerfiles."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipelines import parameters

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))
DOCKERFILES = sorted((ROOT / "docker").glob("*.Dockerfile"))


def _tool(name: str) -> str:
    path = BIN / name if (BIN / name).exists() else shutil.which(name)
    assert path, f"{name} is not installed (pip install the dev extras)"
    return str(path)


def test_github_workflows_match_the_vendored_schema():
    assert {p.name for p in WORKFLOWS} >= {"ci.yaml", "train.yaml", "images.yaml"}
    proc = subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *map(str, WORKFLOWS)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_schema_check_catches_a_broken_workflow(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    step:\n      - run: echo\n")
    proc = subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(bad)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1


def test_train_dispatch_inputs_mirror_the_workflow_parameters():
    doc = yaml.safe_load((ROOT / ".github" / "workflows" / "train.yaml").read_text())
    inputs = doc[True]["workflow_dispatch"]["inputs"]  # YAML 1.1 reads the key `on` as True
    for name, spec in inputs.items():
        if name == "extra-params":
            continue
        param = parameters.BY_NAME[name]
        assert spec["default"] == param.default, name
        if param.enum:
            assert spec["type"] == "choice" and spec["options"] == list(param.enum), name
    run = doc["jobs"]["submit"]["steps"][-1]["run"]
    for name in inputs:
        if name != "extra-params":
            assert f'--param "{name}=$P_' in run, name
    assert "--wait" in run and "${{" not in run  # inputs reach the script only through env


def test_actions_are_pinned_to_exact_versions():
    for path in WORKFLOWS:
        for job in yaml.safe_load(path.read_text())["jobs"].values():
            for step in job["steps"]:
                if "uses" in step:
                    assert step["uses"].count(".") >= 2 or len(step["uses"].split("@")[1]) == 40, step["uses"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfiles_are_hadolint_clean(dockerfile):
    proc = subprocess.run([_tool("hadolint"), str(dockerfile)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_train_dockerfile_is_multistage_pinned_and_non_root():
    text = (ROOT / "docker" / "train.Dockerfile").read_text()
    assert text.count("\nFROM ") >= 2
    assert "python:3.11.11-slim-bookworm" in text and ":latest" not in text
    assert "\nUSER 10001" in text


def test_the_images_are_named_alike_by_the_build_script_the_image_ci_and_the_workflow():
    import re

    from pipelines.emotion_hpo import SERVING_IMAGE, TRAIN_IMAGE

    def repository(reference: str) -> str:
        return reference.rsplit(":", 1)[0].rsplit("/", 1)[-1]

    script = (ROOT / "docker" / "build-images.sh").read_text()
    built = set(re.findall(r"\) name=([\w.-]+);", script))
    ci = yaml.safe_load((ROOT / ".github" / "workflows" / "images.yaml").read_text())
    matrix = {entry["image"] for entry in ci["jobs"]["build"]["strategy"]["matrix"]["include"]}
    assert built == matrix == {repository(TRAIN_IMAGE), repository(SERVING_IMAGE)}
