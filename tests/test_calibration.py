"""Temperature scaling and the expected calibration error (shared.calibration), and the
temperature stored with a model directory (shared.model_package)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from shared.calibration import expected_calibration_error, fit_temperature, nll, softmax
from shared.errors import StepError
from shared.model_package import read_temperature, write_temperature


def _sample(n: int, temperature: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose labels are drawn from softmax(logits / temperature): calibrated at that T."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, size=(n, 6))
    probs = softmax(logits, temperature)
    labels = np.array([rng.choice(6, p=p) for p in probs])
    return logits, labels


def test_ece_of_perfect_and_of_overconfident_predictions():
    labels = np.array([0, 1, 2, 3])
    assert expected_calibration_error(np.eye(6)[labels], labels) == 0.0
    wrong = np.eye(6)[[1, 2, 3, 4]]  # always sure, always wrong
    assert expected_calibration_error(wrong, labels) == pytest.approx(1.0)
    half = np.full((4, 6), 0.1)
    half[:, 0] = 0.5  # 50% confident, right half the time
    assert expected_calibration_error(half, np.array([0, 0, 1, 1])) == pytest.approx(0.0)


def test_fitted_temperature_recovers_the_true_one_and_lowers_nll_and_ece():
    logits, labels = _sample(4000, temperature=2.5)  # the raw logits are over-confident
    fit = fit_temperature(logits, labels)
    assert fit.applied and fit.temperature == pytest.approx(2.5, rel=0.1)
    assert fit.nll_after < fit.nll_before and fit.ece_after < fit.ece_before
    # and on fresh data from the same distribution (the validation split's role)
    fresh, fresh_labels = _sample(4000, temperature=2.5, seed=1)
    before = expected_calibration_error(softmax(fresh), fresh_labels)
    after = expected_calibration_error(softmax(fresh, fit.temperature), fresh_labels)
    assert after < before / 2
    assert (softmax(fresh, fit.temperature).argmax(1) == fresh.argmax(1)).all()  # predictions unchanged


def test_temperature_stays_one_when_fitting_does_not_help():
    logits, labels = _sample(3000, temperature=1.0, seed=2)  # already calibrated
    fit = fit_temperature(logits, labels)
    assert fit.fitted_temperature == pytest.approx(1.0, abs=0.1)
    if not fit.applied:
        assert fit.temperature == 1.0 and fit.ece_after == fit.ece_before
    else:  # applied only if it lowered both on the fitting data
        assert fit.nll_after < fit.nll_before and fit.ece_after < fit.ece_before


def test_never_worse_on_the_fitting_data():
    for seed in range(5):
        logits, labels = _sample(60, temperature=1.0, seed=seed)
        fit = fit_temperature(logits, labels)
        assert fit.ece_after <= fit.ece_before and fit.nll_after <= fit.nll_before
        assert nll(logits, labels, fit.temperature) == pytest.approx(fit.nll_after)


def test_bad_logits_are_rejected():
    with pytest.raises(ValueError, match="logits"):
        fit_temperature(np.zeros(6), np.zeros(1, dtype=int))


def test_model_dir_temperature_round_trip(tmp_path):
    assert read_temperature(tmp_path) == 1.0  # no file: uncalibrated
    write_temperature(tmp_path, 1.7, fitted_on="tune", rows=97)
    assert read_temperature(tmp_path) == 1.7
    assert json.loads((tmp_path / "temperature.json").read_text())["fitted_on"] == "tune"
    (tmp_path / "temperature.json").write_text('{"temperature": -1}')
    with pytest.raises(StepError, match="positive"):
        read_temperature(tmp_path)
    (tmp_path / "temperature.json").write_text("{}")
    with pytest.raises(StepError, match="temperature"):
        read_temperature(tmp_path)
    with pytest.raises(ValueError):
        write_temperature(tmp_path, 0.0)


def test_a_model_already_calibrated_keeps_temperature_one():
    """Labels drawn from the model's own probabilities: any fitted temperature is noise, so 1.0 stays."""
    import numpy as np

    from shared.calibration import expected_calibration_error as ece
    from shared.calibration import fit_temperature, softmax

    rng = np.random.default_rng(1)  # a draw where the fitted 0.97 lowers this sample's NLL and ECE
    logits = rng.normal(0.0, 2.0, size=(500, 6))
    probs = softmax(logits)
    labels = np.array([rng.choice(6, p=p) for p in probs])
    fit = fit_temperature(logits, labels)
    assert fit.temperature == 1.0 and not fit.applied
    assert 0.9 < fit.fitted_temperature < 1.0
    assert ece(softmax(logits, fit.fitted_temperature), labels) < ece(probs, labels)  # noise that "helps"
