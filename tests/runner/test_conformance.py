"""Argo's own examples through `python -m pipelines.run_local`: each runs as Argo would, or is
refused before anything runs with a message naming the feature (exit 2). Never silently different.

The examples live outside the repo: `$ARGO_EXAMPLES_DIR`, default `../shared/argo-examples`
(`ci-tested/` are those Argo's e2e suite runs to Succeeded). The config map that Argo's suite
creates before running them (`simple-parameters`) is given through `--values-dir`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = Path(os.environ.get("ARGO_EXAMPLES_DIR", ROOT.parent / "shared" / "argo-examples"))
MIN_SUCCESS_RATE = 0.80
LONG_BY_DESIGN = {"duration"}  # the `workflows.argoproj.io/no-test` reasons that mean "runs long"


def _examples(folder: str) -> list[Path]:
    return sorted((EXAMPLES / folder).glob("*.yaml"))


def _values(tmp_path: Path) -> Path:
    values = tmp_path / "values"
    (values / "configmaps" / "simple-parameters").mkdir(parents=True)
    (values / "configmaps" / "simple-parameters" / "msg").write_text("hello from a config map")
    (values / "configmaps" / "my-config").mkdir()  # the synchronization examples' limits, as they document
    (values / "configmaps" / "my-config" / "template").write_text("3")
    (values / "configmaps" / "my-config" / "workflow").write_text("3")
    return values


def _run(example: Path, tmp_path: Path, timeout: float) -> tuple[str, str, float]:
    """(outcome, last line, seconds): outcome is succeeded | refused | failed | timed-out."""
    work = tmp_path / example.stem
    work.mkdir()
    argv = [sys.executable, "-m", "pipelines.run_local", str(example), "--local-dir", str(work / ".local")]
    argv += ["--no-smoke", "--values-dir", str(_values(work))]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "400"}
    started = time.monotonic()
    try:
        done = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timed-out", "", time.monotonic() - started
    lines = [ln for ln in (done.stdout + done.stderr).splitlines() if ln.strip()]
    if done.returncode == 0:
        return "succeeded", "", time.monotonic() - started
    if done.returncode == 2:
        ran = (work / ".local" / "runs").exists()
        message = " ".join(" ".join(lines).split())
        return ("failed" if ran else "refused"), message[message.find("error:") :], time.monotonic() - started
    failing = [ln for ln in lines if "✘" in ln] or lines[-1:]
    return "failed", failing[0] if failing else "", time.monotonic() - started


def _no_test_reason(example: Path) -> str | None:
    labels = (yaml.safe_load(example.read_text()).get("metadata") or {}).get("labels") or {}
    return labels.get("workflows.argoproj.io/no-test")


def _serialized(example: Path) -> bool:
    """Its steps wait for each other under a template-level mutex: long by design, as on Argo."""
    templates = (yaml.safe_load(example.read_text()).get("spec") or {}).get("templates") or []
    return any((t.get("synchronization") or {}).get("mutexes") for t in templates)


def _long_by_design(example: Path) -> bool:
    return _no_test_reason(example) in LONG_BY_DESIGN or _serialized(example)


def _run_all(examples: list[Path], tmp_path: Path, timeout: float) -> dict[str, tuple[str, str, float]]:
    """Two at a time; an example that is long by design gets 10 s (it may run on past them)."""

    def run(example: Path) -> tuple[str, str, float]:
        return _run(example, tmp_path, min(timeout, 10) if _long_by_design(example) else timeout)

    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = pool.map(run, examples)
        return {e.name: o for e, o in zip(examples, outcomes, strict=True)}


def _report(title: str, results: dict[str, tuple[str, str, float]]) -> str:
    counts = {
        k: sum(1 for o, _, _ in results.values() if o == k)
        for k in ("succeeded", "refused", "failed", "timed-out")
    }
    lines = [f"{title}: " + ", ".join(f"{n} {k}" for k, n in counts.items()) + f" of {len(results)}"]
    lines += [f"  {o:9} {s:5.1f}s {name}  {why[:160]}" for name, (o, why, s) in sorted(results.items())]
    return "\n".join(lines)


@pytest.mark.slow
@pytest.mark.skipif(
    not (EXAMPLES / "ci-tested").is_dir(), reason=f"no Argo examples at {EXAMPLES} (ARGO_EXAMPLES_DIR)"
)
def test_ci_tested_examples_succeed_or_are_refused_by_name(tmp_path):
    results = _run_all(_examples("ci-tested"), tmp_path, timeout=120)
    report = _report("ci-tested", results)
    print("\n" + report)
    bad = {n: r for n, r in results.items() if r[0] not in ("succeeded", "refused")}
    assert not bad, report
    for name, (outcome, why, _) in results.items():
        if outcome == "refused":  # one line naming what is not supported
            assert why.startswith("error:") and any(
                w in why
                for w in ("not supported", "cannot run locally", "images are not run", "not available")
            ), (name, why)
    rate = sum(1 for o, _, _ in results.values() if o == "succeeded") / len(results)
    assert rate >= MIN_SUCCESS_RATE, report


@pytest.mark.slow
@pytest.mark.skipif(
    not (EXAMPLES / "not-ci-tested").is_dir(), reason=f"no Argo examples at {EXAMPLES} (ARGO_EXAMPLES_DIR)"
)
def test_other_examples_run_or_are_refused_and_only_long_ones_take_long(tmp_path):
    examples = _examples("not-ci-tested")
    results = _run_all(examples, tmp_path, timeout=60)
    report = _report("not-ci-tested", results)
    print("\n" + report)
    for example in examples:
        outcome = results[example.name][0]
        if outcome == "timed-out":
            assert _long_by_design(example), report
