"""The tokenize benchmark keeps working (tiny sizes; its timings are never asserted)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "tokenize_bench.py"


def _module():
    spec = importlib.util.spec_from_file_location("tokenize_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_benchmark_runs_end_to_end_and_reports_both_contenders(tmp_path, full_dataset_dir):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--rows", "3000", "--naive-rows", "1000", "--json", str(out)],
        cwd=ROOT,
        env={**os.environ, "EMOTION_DATASET_DIR": str(full_dataset_dir)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["step"]["rows"] == 5000 and result["naive"]["rows"] == 2000
    assert result["same_ids"] is True
    assert result["step"]["peak_rss_mb"] < 1536
    assert "| step: Arrow batches" in proc.stdout and "extrapolated" in proc.stdout


def test_docs_section_is_replaced_in_place(tmp_path):
    bench = _module()
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"# Benchmarks\n\n{bench.SECTION}\n\nold numbers\n\n## HPO (issue 4)\n\nkeep me\n")
    bench.update_docs("new table", doc)
    bench.update_docs("newer table", doc)
    text = doc.read_text()
    assert "old numbers" not in text and "new table" not in text and "newer table" in text
    assert text.endswith("## HPO (issue 4)\n\nkeep me\n") and text.count(bench.SECTION) == 1


def test_synthetic_dataset_is_valid_and_deterministic(tmp_path, dataset_dir):
    from shared.data_registry.format import validate_dataset
    from shared.data_registry.hashing import file_sha256

    bench = _module()
    a = bench.make_synthetic(tmp_path / "a", 1000, validation_rows=100, source=dataset_dir)
    b = bench.make_synthetic(tmp_path / "b", 1000, validation_rows=100, source=dataset_dir)
    _, stats = validate_dataset(a)
    assert stats["train"].rows == 1000 and len(stats["train"].label_counts) == 6
    assert file_sha256(a / "train.parquet") == file_sha256(b / "train.parquet")
