"""Every environment variable the code reads is declared in a settings model and documented.

The scan reads the product's source (steps, serving, shared, pipelines) for `os.environ[...]`,
`os.environ.get(...)`, `os.getenv(...)`, `... in os.environ` (and the same on an `environ`
mapping passed in), resolving module-level string constants and loops over constant tuples.
"""

from __future__ import annotations

import ast
from pathlib import Path

from shared import env_table

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("steps", "serving", "shared", "pipelines")
# Reads whose names come from the user, not the code: `run_local --pass-env NAME`.
USER_NAMED = {("pipelines/local_runner/app.py", "k")}


def _is_environ(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
        isinstance(node, ast.Name) and node.id == "environ"
    )


def _constants(tree: ast.Module) -> dict[str, list[str]]:
    """Module-level names bound to a string or a tuple/list/set of strings."""
    found: dict[str, list[str]] = {}
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            value = node.value
            if isinstance(value, ast.Call) and value.args:  # frozenset({...})
                value = value.args[0]
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                strings = [value.value]
            elif isinstance(value, (ast.Tuple, ast.List, ast.Set)) and all(
                isinstance(e, ast.Constant) and isinstance(e.value, str) for e in value.elts
            ):
                strings = [e.value for e in value.elts]
            else:
                continue
            for target in targets:
                if isinstance(target, ast.Name):
                    found[target.id] = strings
    return found


def _loop_names(tree: ast.Module, constants: dict[str, list[str]]) -> dict[str, list[str]]:
    """`for k in CONST` / `... for k in CONST`: k stands for every element of CONST."""
    bound: dict[str, list[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.For, ast.comprehension)):
            it = node.iter
            if isinstance(it, ast.Call) and isinstance(it.func, ast.Attribute):  # hidden.items()
                continue
            if isinstance(node.target, ast.Name) and isinstance(it, ast.Name) and it.id in constants:
                bound.setdefault(node.target.id, []).extend(constants[it.id])
    return bound


def _key(node: ast.AST) -> ast.AST | None:
    if isinstance(node, ast.Subscript) and _is_environ(node.value) and isinstance(node.ctx, ast.Load):
        return node.slice
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
        if node.func.attr == "getenv" or (node.func.attr in ("get", "pop") and _is_environ(node.func.value)):
            return node.args[0]
    if isinstance(node, ast.Compare) and isinstance(node.ops[0], (ast.In, ast.NotIn)):
        if _is_environ(node.comparators[0]):
            return node.left
    return None


def environment_reads(
    root: Path = ROOT, packages: tuple[str, ...] = PACKAGES
) -> tuple[dict[str, set[str]], list[str]]:
    """(variable -> where it is read, reads whose variable the scan cannot name)."""
    reads: dict[str, set[str]] = {}
    unnamed: list[str] = []
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            tree = ast.parse(path.read_text())
            constants = _constants(tree)
            loops = _loop_names(tree, constants)
            for node in ast.walk(tree):
                key = _key(node)
                if key is None:
                    continue
                if isinstance(key, ast.Call) and isinstance(key.func, ast.Attribute):
                    key = key.func.value  # NAME.lower()
                if isinstance(key, ast.Constant) and isinstance(key.value, str):
                    names = [key.value]
                elif isinstance(key, ast.Name) and key.id in constants:
                    names = constants[key.id]
                elif isinstance(key, ast.Name) and key.id in loops:
                    names = loops[key.id]
                elif isinstance(key, ast.Name) and (rel, key.id) in USER_NAMED:
                    continue
                else:
                    unnamed.append(f"{rel}:{node.lineno} {ast.unparse(key)}")
                    continue
                for name in names:
                    reads.setdefault(name.upper(), set()).add(f"{rel}:{node.lineno}")
    return reads, unnamed


def test_the_scan_finds_reads_of_each_kind(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "reads.py").write_text(
        "import os\n"
        "KEYS = ('A_LOOPED', 'B_LOOPED')\n"
        "NAMED = 'A_CONSTANT'\n"
        "def f(environ):\n"
        "    os.environ.get('A_GET')\n"
        "    os.environ['A_SUBSCRIPT']\n"
        "    os.getenv(NAMED)\n"
        "    environ.get('A_PASSED_MAPPING')\n"
        "    'A_MEMBERSHIP' in os.environ\n"
        "    os.environ.get('lower_case'.lower())\n"
        "    return [os.environ.get(k) for k in KEYS]\n"
    )
    reads, unnamed = environment_reads(tmp_path, ("pkg",))
    assert set(reads) == {
        "A_GET", "A_SUBSCRIPT", "A_CONSTANT", "A_PASSED_MAPPING", "A_MEMBERSHIP", "LOWER_CASE",
        "A_LOOPED", "B_LOOPED",
    }  # fmt: skip
    assert unnamed == []
    (tmp_path / "pkg" / "dynamic.py").write_text("import os\ndef g(name):\n    return os.environ[name]\n")
    assert environment_reads(tmp_path, ("pkg",))[1] == ["pkg/dynamic.py:3 name"]


def test_every_variable_the_code_reads_is_declared_in_a_settings_model():
    reads, unnamed = environment_reads()
    assert not unnamed, f"environment reads whose variable the scan cannot name: {unnamed}"
    undeclared = {name: sorted(where) for name, where in reads.items() if name not in env_table.declared()}
    assert not undeclared, (
        f"read but not declared in any model of shared/env_table.py MODELS: {undeclared}; "
        "declare them (shared/environment.py) and regenerate docs/environment.md"
    )


def test_docs_environment_md_is_generated_from_the_models():
    current = (ROOT / "docs" / "environment.md").read_text()
    assert current == env_table.render(), "stale: run `python -m shared.env_table > docs/environment.md`"


def test_each_variable_is_declared_once():
    names = [variable for variable, *_ in env_table.variables()]
    assert len(names) == len(set(names)), sorted({n for n in names if names.count(n) > 1})
