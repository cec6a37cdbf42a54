"""Lineage in images: the commit is a build argument the code reads, and images carry no `latest`.

The image-like environment is the project installed as a wheel into a bare folder (what the
Dockerfiles' `pip install .` produces), run from a directory with no `.git` anywhere above it,
with the environment the Dockerfile sets from its `GIT_COMMIT` build argument.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
HEX_COMMIT = re.compile(r"[0-9a-f]{40}")
DOCKERFILES = (ROOT / "docker" / "train.Dockerfile", ROOT / "docker" / "serving.Dockerfile")


def _dockerfile_env(dockerfile: Path, build_args: dict[str, str]) -> dict[str, str]:
    """The ENV values of the runtime stage, with `${ARG}` substituted from `build_args`."""
    text = dockerfile.read_text().split("AS runtime", 1)[1]
    env: dict[str, str] = {}
    for match in re.finditer(r"^ENV GIT_COMMIT=(\S+)$", text, re.M):
        env["GIT_COMMIT"] = re.sub(r"\$\{(\w+)\}", lambda m: build_args.get(m.group(1), ""), match.group(1))
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The project installed from a wheel into a folder outside any git repository."""
    target = tmp_path_factory.mktemp("site") / "site-packages"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, f"the project does not install as a wheel: {proc.stderr[-500:]}"
    assert not (target / ".git").exists()
    return target


def _code_version_in(installed: Path, env: dict[str, str], cwd: Path) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("GIT_COMMIT", "PYTHONPATH", "GIT_DIR")}
    clean.update(env, PYTHONPATH=str(installed), GIT_CEILING_DIRECTORIES=str(cwd.parent))
    proc = subprocess.run(
        [sys.executable, "-c", "import shared.lineage as l; print(l.__file__); print(l.code_version())"],
        cwd=cwd, env=clean,
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    module_file, version = proc.stdout.split()
    assert module_file.startswith(str(installed)), "the installed copy ran, not the checkout"
    return version


@pytest.mark.slow
def test_code_version_is_the_real_commit_inside_an_image(installed, tmp_path):
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    cwd = tmp_path / "work"
    cwd.mkdir()
    for dockerfile in DOCKERFILES:
        env = _dockerfile_env(dockerfile, {"GIT_COMMIT": commit})
        version = _code_version_in(installed, env, cwd)
        assert HEX_COMMIT.fullmatch(version) and version == commit, (dockerfile.name, version)
    # without the build argument nothing knows the commit: which is why the build requires it
    assert _code_version_in(installed, {}, cwd) == "unknown"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfiles_require_the_commit_and_bake_it_in(dockerfile):
    runtime = dockerfile.read_text().split("AS runtime", 1)[1]
    assert re.search(r"^ARG GIT_COMMIT$", runtime, re.M)
    assert 'test -n "${GIT_COMMIT}"' in runtime  # a build without the commit fails
    assert re.search(r"^ENV GIT_COMMIT=\$\{GIT_COMMIT\}$", runtime, re.M)
    assert 'org.opencontainers.image.revision="${GIT_COMMIT}"' in runtime


def test_images_are_built_with_the_commit_and_tagged_immutably():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "images.yaml").read_text())
    steps = workflow["jobs"]["build"]["steps"]
    build = next(s for s in steps if s.get("uses", "").startswith("docker/build-push-action"))
    assert "GIT_COMMIT=${{ github.sha }}" in build["with"]["build-args"]
    meta = next(s for s in steps if s.get("uses", "").startswith("docker/metadata-action"))
    tags = meta["with"]["tags"]
    assert "type=sha,format=long,prefix=" in tags
    assert "latest" not in tags and "type=ref,event=branch" not in tags


def test_the_workflow_default_image_tag_is_not_mutable():
    from pipelines import parameters
    from steps.cache_keys import MUTABLE_TAGS

    default = parameters.defaults()["image-tag"]
    assert default.lower() not in MUTABLE_TAGS
    assert re.fullmatch(r"\d+\.\d+\.\d+", default) or HEX_COMMIT.fullmatch(default), default
