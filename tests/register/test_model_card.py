"""The model card: every section a reviewer needs, within MLflow's description limit."""

from __future__ import annotations

from steps.register.evaluate import CalibrationMetrics, ClassMetrics, EvalMetrics
from steps.register.gate import decide, decision_record
from steps.register.model_card import MAX_DESCRIPTION_CHARS, CardInputs, description, model_card

NAMES = ["sadness", "joy", "love", "anger", "fear", "surprise"]


def _metrics(recall: float) -> EvalMetrics:
    return EvalMetrics(
        split="validation",
        rows=500,
        data_hash="f" * 64,
        accuracy=0.85,
        f1_macro=0.78,
        per_class=[ClassMetrics(label=n, precision=0.8, recall=recall, f1=0.8, support=80) for n in NAMES],
        confusion=[[70 if r == c else 2 for c in range(6)] for r in range(6)],
        label_names=NAMES,
        calibration=CalibrationMetrics(
            temperature=1.31, ece_before=0.081, ece_after=0.032, nll_before=0.52, nll_after=0.47, bins=15
        ),
    )


def _card(**kw) -> CardInputs:
    ours, theirs = _metrics(0.8), _metrics(0.7)
    scores = {"accuracy": 0.85, "f1_macro": 0.78}
    decision = decide(
        scores, {"accuracy": 0.84, "f1_macro": 0.80}, tolerances={"accuracy": 0.005, "f1_macro": 0.01}
    )
    values = dict(
        model_name="emotion-classifier",
        version="7",
        tags={
            "dvc_data_version": "emotion-v1.0.0",
            "dataset_hash": "d5e7a11" + "0" * 57,
            "trial_id": "t001",
            "parent_run_id": "p123",
            "source_run_id": "c456",
        },
        hyperparameters={"learning_rate": "0.00025", "batch_size": "32"},
        parent_params={
            "train_rows": "2000",
            "tune_rows": "500",
            "num_samples": "3",
            "selection_split": "tune",
        },
        parent_metrics={"best_val_loss": 0.41, "best_val_accuracy": 0.86, "failed_trials": 0.0},
        metrics=ours,
        decision=decision_record(decision, ours, theirs, champion_version=6),
        report_uri="runs:/c456/evaluation/validation-ffff",
    )
    return CardInputs(**{**values, **kw})


def test_card_has_every_section():
    text = model_card(_card())
    for needle in (
        "# emotion-classifier v7",
        "emotion-v1.0.0",
        "d5e7a11",
        "| 2000 | 500 | 500 |",  # training rows, tune rows, validation rows
        "`learning_rate=0.00025`",
        "3 trials",
        "on the tune split",
        "Accuracy **0.8500**, macro-F1 **0.7800**",
        "| surprise | 0.8000 | 0.8000 |",
        "Temperature **1.3100**",
        "0.0810 -> **0.0320**",
        "## Confusion matrix",
        "| sadness | 70 | 2 |",
        "not promoted",
        "| f1_macro | 0.7800 | 0.8000 |",
        "| champion | 0.7000 |",  # per-class recall of the champion
        "English tweets",
        "six classes",
        "128 tokens",
        "runs:/c456/evaluation/validation-ffff",
    ):
        assert needle in text, needle
    assert len(description(_card())) <= MAX_DESCRIPTION_CHARS


def test_long_cards_are_shortened_to_the_mlflow_limit():
    card = _card(hyperparameters={f"param_{i}": "x" * 40 for i in range(60)})
    text = description(card)
    assert len(text) <= MAX_DESCRIPTION_CHARS and text.startswith("# emotion-classifier v7")
