"""serving.uvicorn_compat, the one module that relies on Uvicorn's internals, refuses an untested Uvicorn;
nothing else in serving/ reaches into a third-party library's private names."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap
import tomllib

import pytest

from serving.uvicorn_compat import TESTED_UVICORN_VERSIONS, UntestedUvicorn, check_uvicorn_version
from tests.conftest import ROOT


def test_an_untested_uvicorn_is_refused_naming_the_versions():
    with pytest.raises(UntestedUvicorn, match=r"tested with uvicorn 0\.54\.0; uvicorn 9\.9\.9 is installed"):
        check_uvicorn_version("9.9.9")


def test_the_server_does_not_start_on_an_untested_uvicorn():
    """Importing the module (as Uvicorn does for `http=`, and the Gunicorn worker does) fails."""
    code = textwrap.dedent(
        """
        import importlib.metadata as metadata
        real = metadata.version
        metadata.version = lambda name: "9.9.9" if name == "uvicorn" else real(name)
        import serving.worker
        """
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "UntestedUvicorn" in done.stderr and "uvicorn 9.9.9 is installed" in done.stderr


def test_the_pinned_uvicorn_is_a_tested_one():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = [re.match(r"uvicorn(\[[^\]]*\])?==(\S+)$", dep) for dep in deps]
    pinned = {m.group(2) for m in pins if m}
    assert pinned and pinned <= TESTED_UVICORN_VERSIONS


THIRD_PARTY = ("uvicorn", "uvicorn_worker", "gunicorn", "starlette", "fastapi", "httptools")


def test_no_serving_module_but_the_compat_one_uses_a_private_name_of_a_third_party_library():
    """Private names: `from lib._x import`, `lib._x`, or a private attribute of an object that is not
    ours (anything but `self`, `cls` and our own classes' instances: flagged by a name starting `_`
    on a name imported from a third-party library)."""
    offences = []
    for path in sorted((ROOT / "serving").glob("*.py")):
        if path.name == "uvicorn_compat.py":
            continue
        tree = ast.parse(path.read_text())
        imported: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in THIRD_PARTY:
                if any(part.startswith("_") for part in node.module.split(".")):
                    offences.append(f"{path.name}: from {node.module} import")
                imported |= {alias.asname or alias.name for alias in node.names}
            elif isinstance(node, ast.Import):
                imported |= {
                    (alias.asname or alias.name).split(".")[0]
                    for alias in node.names
                    if alias.name.split(".")[0] in THIRD_PARTY
                }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                base = node.value
                if isinstance(base, ast.Name) and base.id in imported:
                    offences.append(f"{path.name}:{node.lineno}: {base.id}.{node.attr}")
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and any(
                isinstance(b, ast.Name) and b.id in imported for b in node.bases
            ):
                for item in node.body:
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and item.name.startswith("_"):
                        if not item.name.startswith("__"):
                            offences.append(
                                f"{path.name}: {node.name}.{item.name} overrides a private method"
                            )
                for sub in ast.walk(node):
                    if (
                        isinstance(sub, ast.Attribute)
                        and isinstance(sub.value, ast.Name)
                        and sub.value.id == "self"
                        and sub.attr.startswith("_")
                        and not sub.attr.startswith("__")
                    ):
                        offences.append(f"{path.name}:{sub.lineno}: {node.name} uses self.{sub.attr}")
    assert offences == []
