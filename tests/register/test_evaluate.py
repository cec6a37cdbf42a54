import json
import shutil

import pandas as pd
import pytest

from shared.errors import StepError
from steps.register.evaluate import (
    EvalData,
    compute_metrics,
    evaluate_model_dir,
    load_eval_split,
    read_label_map,
    write_report,
)

NAMES = ["sadness", "joy", "love", "anger", "fear", "surprise"]


def _dataset(tmp_path, splits=("train", "validation"), rows=None):
    rows = rows or [
        ("i feel sad", 0),
        ("so happy", 1),
        ("love you", 2),
        ("furious", 3),
        ("scared", 4),
        ("wow", 5),
    ]
    df = pd.DataFrame(rows, columns=["text", "label"])
    for split in splits:
        df.assign(text=df["text"] + f" ({split})").to_parquet(tmp_path / f"{split}.parquet")
    (tmp_path / "metadata.json").write_text(
        json.dumps({"label_map": {str(i): n for i, n in enumerate(NAMES)}})
    )
    return tmp_path


def test_metrics_match_a_hand_computed_example():
    data = EvalData(
        "validation", ["a", "b", "c", "d"], ["joy", "joy", "anger", "fear"], ["joy", "anger", "fear"], "h"
    )
    m = compute_metrics(data, ["joy", "anger", "anger", "fear"])
    assert m.accuracy == pytest.approx(0.75)
    per = {c.label: c for c in m.per_class}
    assert (per["joy"].precision, per["joy"].recall, per["joy"].support) == (1.0, 0.5, 2)
    assert per["anger"].precision == pytest.approx(0.5) and per["anger"].recall == 1.0
    assert m.f1_macro == pytest.approx((2 / 3 + 2 / 3 + 1.0) / 3)
    assert m.confusion == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    assert m.score("f1_macro") == m.f1_macro
    with pytest.raises(StepError, match="allowed: accuracy, f1_macro"):
        m.score("loss")


def test_test_split_is_preferred_over_validation(tmp_path):
    assert load_eval_split(_dataset(tmp_path, ("train", "validation", "test"))).split == "test"
    (tmp_path / "test.parquet").unlink()
    data = load_eval_split(tmp_path)
    assert data.split == "validation"
    assert data.texts[0].endswith("(validation)") and data.labels[3] == "anger"


def test_eval_limit_is_a_deterministic_sample_with_its_own_hash(dataset_dir):
    a, b = load_eval_split(dataset_dir, limit=50), load_eval_split(dataset_dir, limit=50)
    full = load_eval_split(dataset_dir)
    assert len(a.texts) == 50 and a.texts == b.texts and a.data_hash == b.data_hash
    rows = json.loads((dataset_dir / "metadata.json").read_text())["splits"]["validation"]["rows"]
    assert len(full.texts) == rows and full.data_hash != a.data_hash
    assert set(a.texts) <= set(full.texts)


def test_bad_datasets_are_clear_errors(tmp_path):
    with pytest.raises(StepError, match="does not exist"):
        load_eval_split(tmp_path / "nope")
    no_split = tmp_path / "no-eval-split"
    no_split.mkdir()
    with pytest.raises(StepError, match="neither test.parquet nor validation.parquet"):
        load_eval_split(_dataset(no_split, ("train",)))
    bad_label = tmp_path / "bad-label"
    bad_label.mkdir()
    _dataset(bad_label, ("validation",), rows=[("ok", 1), ("what", 9)])
    with pytest.raises(StepError, match=r"row 1 has label 9; allowed: 0..5"):
        load_eval_split(bad_label)
    (bad_label / "metadata.json").write_text("{}")
    with pytest.raises(StepError, match="label_map"):
        read_label_map(bad_label)
    (bad_label / "metadata.json").unlink()
    with pytest.raises(StepError, match="metadata.json is missing"):
        load_eval_split(bad_label)


def test_missing_columns_are_named(tmp_path):
    _dataset(tmp_path, ("validation",))
    pd.DataFrame({"sentence": ["x"], "label": [0]}).to_parquet(tmp_path / "validation.parquet")
    with pytest.raises(StepError, match=r"missing column\(s\) \['text'\]"):
        load_eval_split(tmp_path)


def test_report_has_metrics_table_and_confusion_png(tmp_path):
    data = EvalData("test", ["a", "b"], ["joy", "fear"], NAMES, "h")
    out = write_report(compute_metrics(data, ["joy", "joy"]), tmp_path / "report")
    assert json.loads((out / "metrics.json").read_text())["accuracy"] == 0.5
    csv = (out / "per_class.csv").read_text().splitlines()
    assert csv[0] == "label,precision,recall,f1,support" and len(csv) == 1 + len(NAMES)
    assert (out / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_model_is_scored_with_its_own_tokenizer(constant_model_dirs, dataset_dir):
    data = load_eval_split(dataset_dir, limit=120)
    metrics = evaluate_model_dir(constant_model_dirs["joy"], data)
    assert metrics.accuracy == pytest.approx(data.labels.count("joy") / 120)
    assert {c.label: c.recall for c in metrics.per_class}["joy"] == 1.0


def test_model_with_other_labels_is_refused(tiny_model_dir, dataset_dir, tmp_path):
    other = shutil.copytree(tiny_model_dir, tmp_path / "other")
    (other / "labels.json").write_text(json.dumps({str(i): f"class{i}" for i in range(6)}))
    with pytest.raises(StepError, match="do not match the dataset's label_map"):
        evaluate_model_dir(other, load_eval_split(dataset_dir, limit=10))


def test_temperature_is_applied_and_ece_reported_before_and_after(constant_model_dirs, dataset_dir, tmp_path):
    """A model that always answers joy with ~100% confidence is over-confident; the temperature
    stored with it brings its confidence down to its accuracy without changing a prediction."""
    import shutil

    from shared.model_package import write_temperature

    data = load_eval_split(dataset_dir, limit=200)
    raw = evaluate_model_dir(constant_model_dirs["joy"], data)
    assert raw.calibration is not None and raw.calibration.temperature == 1.0
    assert raw.calibration.ece_before == raw.calibration.ece_after > 0.5
    calibrated_dir = tmp_path / "calibrated"
    shutil.copytree(constant_model_dirs["joy"], calibrated_dir)
    write_temperature(calibrated_dir, 10.0)
    calibrated = evaluate_model_dir(calibrated_dir, data)
    assert calibrated.accuracy == raw.accuracy and calibrated.confusion == raw.confusion
    cal = calibrated.calibration
    assert cal.temperature == 10.0 and cal.ece_before == pytest.approx(raw.calibration.ece_before)
    assert cal.ece_after < 0.1 < 0.5 < cal.ece_before and cal.nll_after < cal.nll_before
