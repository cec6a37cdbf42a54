"""Confidence calibration: one temperature for the logits, and the expected calibration error.

A classifier's confidence is the softmax of its logits; `softmax(logits / T)` with one scalar
`T > 0` fitted on held-out data (temperature scaling, Guo et al. 2017) makes "confidence 0.9"
mean "right about 90% of the time" without changing any prediction (the argmax is unchanged).

Numpy only (plus scipy's bounded scalar search), so hpo, register and serving share it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

ECE_BINS = 15
# The fitted temperature is searched in [1/20, 20] (in log space): wide enough for any sane model.
LOG_T_BOUNDS = (-math.log(20.0), math.log(20.0))


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of `logits / temperature`, computed stably in float64."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of `labels` under `softmax(logits / temperature)`."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=-1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=-1))
    labels = np.asarray(labels, dtype=np.int64)
    return float(np.mean(log_norm - z[np.arange(len(labels)), labels]))


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE: the sample-weighted mean |accuracy - confidence| over equal-width confidence bins."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        return 0.0
    confidence = probs.max(axis=-1)
    correct = (probs.argmax(axis=-1) == labels).astype(np.float64)
    # bin i holds confidences in (i/bins, (i+1)/bins]; a confidence of exactly 0 goes to bin 0
    index = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        members = index == b
        if members.any():
            ece += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(ece)


@dataclass(frozen=True)
class TemperatureFit:
    """A fitted temperature and what it does on the data it was fitted on."""

    temperature: float  # what to apply (1.0 when fitting did not help)
    fitted_temperature: float  # the NLL minimiser, applied or not
    rows: int
    nll_before: float
    nll_after: float
    ece_before: float
    ece_after: float
    applied: bool

    def as_dict(self) -> dict[str, float | int | bool]:
        return asdict(self)


BOOTSTRAP_SAMPLES = 200
BOOTSTRAP_AGREEMENT = 0.9  # share of resamples on which the temperature must lower the ECE


def _ece_gain_is_real(logits: np.ndarray, labels: np.ndarray, temperature: float, bins: int) -> bool:
    """Whether `temperature` lowers the ECE on at least 90% of bootstrap resamples of the fit data.

    A temperature fitted to noise (say 0.99 on a model that is already well calibrated) lowers the
    ECE of the rows it was fitted on, yet as often raises it on unseen rows; requiring the gain to
    hold across resamples keeps 1.0 unless the correction is systematic.
    """
    rng = np.random.default_rng(0)
    plain, scaled = softmax(logits), softmax(logits, temperature)
    wins = 0
    for _ in range(BOOTSTRAP_SAMPLES):
        idx = rng.integers(0, len(labels), len(labels))
        wins += expected_calibration_error(scaled[idx], labels[idx], bins) < expected_calibration_error(
            plain[idx], labels[idx], bins
        )
    return wins >= BOOTSTRAP_AGREEMENT * BOOTSTRAP_SAMPLES


def fit_temperature(logits: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> TemperatureFit:
    """The temperature minimising the NLL of `labels`, kept only if it lowers both NLL and ECE.

    "Never make calibration worse": when the fitted temperature does not lower both the NLL and
    the ECE on this data, or its ECE gain does not hold across bootstrap resamples (a fit to
    noise), the returned `temperature` is 1.0 (the fitted value is still reported).
    """
    from scipy.optimize import minimize_scalar

    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if logits.ndim != 2 or len(logits) != len(labels) or len(labels) == 0:
        raise ValueError(
            f"need (rows, classes) logits and one label per row; got {logits.shape}, {labels.shape}"
        )
    found = minimize_scalar(
        lambda log_t: nll(logits, labels, math.exp(log_t)),
        bounds=LOG_T_BOUNDS,
        method="bounded",
        options={"xatol": 1e-4},
    )
    fitted = float(math.exp(found.x))
    nll_before, nll_fitted = nll(logits, labels), nll(logits, labels, fitted)
    ece_before = expected_calibration_error(softmax(logits), labels, bins)
    ece_fitted = expected_calibration_error(softmax(logits, fitted), labels, bins)
    applied = (
        nll_fitted < nll_before
        and ece_fitted < ece_before
        and _ece_gain_is_real(logits, labels, fitted, bins)
    )
    return TemperatureFit(
        temperature=fitted if applied else 1.0,
        fitted_temperature=fitted,
        rows=len(labels),
        nll_before=nll_before,
        nll_after=nll_fitted if applied else nll_before,
        ece_before=ece_before,
        ece_after=ece_fitted if applied else ece_before,
        applied=applied,
    )
