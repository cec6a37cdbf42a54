"""Golden test: the committed YAML is exactly what the Hera builders compile to.

Regenerate on purpose with `UPDATE_GOLDEN=1 pytest tests/pipelines/test_golden.py`
(or `python -m pipelines.compile`).
"""

from __future__ import annotations

import os

import yaml

from pipelines import compile as compile_mod


def test_committed_yaml_matches_builders():
    texts = compile_mod.compiled()
    if os.environ.get("UPDATE_GOLDEN") == "1":
        for name, text in texts.items():
            (compile_mod.PIPELINES_DIR / name).write_text(text)
    for name, text in texts.items():
        committed = (compile_mod.PIPELINES_DIR / name).read_text()
        assert committed == text, f"pipelines/{name} is stale: run `python -m pipelines.compile`"


def test_check_mode_reports_stale_files(tmp_path, capsys):
    assert compile_mod.main(["--out-dir", str(tmp_path)]) == 0
    assert compile_mod.main(["--check", "--out-dir", str(tmp_path)]) == 0
    (tmp_path / "emotion-hpo.yaml").write_text("stale\n")
    assert compile_mod.main(["--check", "--out-dir", str(tmp_path)]) == 1
    assert "emotion-hpo.yaml" in capsys.readouterr().err


def test_yaml_round_trips_to_the_builder_output(workflow, template):
    assert yaml.safe_load((compile_mod.PIPELINES_DIR / "emotion-hpo.yaml").read_text()) == workflow
    assert yaml.safe_load((compile_mod.PIPELINES_DIR / "emotion-hpo-template.yaml").read_text()) == template


def test_multiline_search_space_is_a_readable_block(workflow):
    text = (compile_mod.PIPELINES_DIR / "emotion-hpo.yaml").read_text()
    assert "value: |\n" in text and "distribution: loguniform" in text
