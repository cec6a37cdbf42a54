import pytest

from steps.register.gate import decide


def test_first_model_becomes_champion():
    decision = decide(0.31, None, tolerance=0.0)
    assert decision.promote
    assert "no champion" in decision.reason


def test_better_challenger_is_promoted_and_reason_names_both_scores():
    decision = decide(0.92, 0.90, tolerance=0.005, champion_version=3)
    assert decision.promote
    assert "0.9200" in decision.reason and "champion v3 0.9000" in decision.reason


@pytest.mark.parametrize(
    ("challenger", "champion", "tolerance", "promote"),
    [
        (0.895, 0.90, 0.005, True),  # exactly at the tolerance edge: not worse by *more*
        (0.8949, 0.90, 0.005, False),
        (0.80, 0.90, 0.2, True),
        (0.90, 0.90, 0.0, True),  # a tie keeps the newest model
        (0.8999, 0.90, 0.0, False),
    ],
)
def test_tolerance_bounds_how_much_worse_a_challenger_may_be(challenger, champion, tolerance, promote):
    assert decide(challenger, champion, tolerance=tolerance).promote is promote


def test_rejection_reason_says_why():
    decision = decide(0.70, 0.90, tolerance=0.01, metric="f1_macro", champion_version=2)
    assert not decision.promote
    assert "f1_macro" in decision.reason and "worse by more than tolerance 0.01" in decision.reason
    assert "-0.2000" in decision.reason


def test_negative_tolerance_is_rejected():
    with pytest.raises(ValueError, match="tolerance"):
        decide(0.5, 0.5, tolerance=-0.1)


TOLERANCES = {"accuracy": 0.005, "f1_macro": 0.01}


def test_better_accuracy_but_worse_macro_f1_beyond_tolerance_is_refused():
    """A challenger that gives up on rare classes can gain accuracy while losing macro-F1."""
    decision = decide(
        {"accuracy": 0.80, "f1_macro": 0.60},
        {"accuracy": 0.79, "f1_macro": 0.65},
        tolerances=TOLERANCES,
        champion_version=4,
    )
    assert not decision.promote
    assert [(c.metric, c.passed) for c in decision.checks] == [("accuracy", True), ("f1_macro", False)]
    assert "challenger f1_macro 0.6000 vs champion v4 0.6500" in decision.reason
    assert "worse by more than tolerance 0.01" in decision.reason and "accuracy 0.8000" in decision.reason


@pytest.mark.parametrize(
    ("challenger", "promote"),
    [
        ({"accuracy": 0.895, "f1_macro": 0.79}, True),  # both exactly at their tolerance edge
        ({"accuracy": 0.8949, "f1_macro": 0.80}, False),  # accuracy beyond its tolerance
        ({"accuracy": 0.90, "f1_macro": 0.7899}, False),  # macro-F1 beyond its tolerance
        ({"accuracy": 0.91, "f1_macro": 0.81}, True),
    ],
)
def test_both_metrics_must_be_within_their_tolerance(challenger, promote):
    champion = {"accuracy": 0.90, "f1_macro": 0.80}
    assert decide(challenger, champion, tolerances=TOLERANCES).promote is promote


def test_first_model_with_two_metrics_and_missing_metric_is_an_error():
    first = decide({"accuracy": 0.5, "f1_macro": 0.4}, None, tolerances=TOLERANCES)
    assert first.promote and "accuracy 0.5000, f1_macro 0.4000" in first.reason
    with pytest.raises(ValueError, match="f1_macro"):
        decide({"accuracy": 0.5}, {"accuracy": 0.5, "f1_macro": 0.5}, tolerances=TOLERANCES)


def test_decision_record_has_per_class_recall_of_both_models():
    from steps.register.evaluate import ClassMetrics
    from steps.register.gate import decision_record

    class Scores:
        def __init__(self, recalls):
            self.per_class = [
                ClassMetrics(label=k, precision=0.5, recall=v, f1=0.5, support=10) for k, v in recalls.items()
            ]

    decision = decide(
        {"accuracy": 0.8, "f1_macro": 0.6}, {"accuracy": 0.79, "f1_macro": 0.65}, tolerances=TOLERANCES
    )
    record = decision_record(
        decision,
        Scores({"joy": 0.95, "surprise": 0.1}),
        Scores({"joy": 0.9, "surprise": 0.6}),
        champion_version=4,
    )
    assert record["per_class_recall"]["challenger"] == {"joy": 0.95, "surprise": 0.1}
    assert record["per_class_recall"]["champion"] == {"joy": 0.9, "surprise": 0.6}
    assert record["per_class_recall"]["delta"]["surprise"] == pytest.approx(-0.5)
    assert record["checks"][1]["metric"] == "f1_macro" and record["checks"][1]["delta"] == pytest.approx(
        -0.05
    )
    assert record["promoted"] is False and record["champion_version"] == "4"
    import json

    json.dumps(record)  # JSON-able
