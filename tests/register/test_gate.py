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
