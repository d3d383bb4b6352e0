"""Calibration of probabilities: Brier score, logistic intercept and slope, reliability curve."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit
from sklearn.calibration import calibration_curve

#: Bins of the reliability curve (quantile bins: equal numbers of lesions).
RELIABILITY_BINS = 10
#: Scores are clipped to ``[eps, 1 - eps]`` before the logit of the calibration fit.
LOGIT_EPS = 1e-7


def _logistic_fit(
    offset: np.ndarray, x: np.ndarray | None, y: np.ndarray
) -> tuple[np.ndarray, bool]:
    """Maximum-likelihood ``y ~ a + b * x + offset`` (or ``a + offset`` when x is None)."""
    design = np.ones((y.size, 1)) if x is None else np.column_stack([np.ones(y.size), x])

    def loss(beta: np.ndarray) -> tuple[float, np.ndarray]:
        eta = offset + design @ beta
        value = float(np.mean(np.logaddexp(0.0, eta) - y * eta))
        gradient: np.ndarray = design.T @ (expit(eta) - y) / y.size
        return value, gradient

    start = np.zeros(design.shape[1])
    if x is not None:
        start[1] = 1.0
    fit = minimize(loss, start, jac=True, method="BFGS", options={"gtol": 1e-10})
    return np.asarray(fit.x, dtype=np.float64), bool(fit.success)


def _calibration(truth: np.ndarray, score: np.ndarray) -> dict[str, Any] | None:
    if score.min() < 0.0 or score.max() > 1.0:
        return None
    clipped = np.clip(score, LOGIT_EPS, 1.0 - LOGIT_EPS)
    logit = np.log(clipped) - np.log1p(-clipped)
    y = truth.astype(np.float64)
    (intercept, slope), converged = _logistic_fit(np.zeros(y.size), logit, y)
    (in_the_large,), converged_large = _logistic_fit(logit, None, y)
    fraction, predicted = calibration_curve(
        truth, score, n_bins=RELIABILITY_BINS, strategy="quantile"
    )
    return {
        "brier": float(np.mean((score - y) ** 2)),
        "intercept": float(intercept),
        "slope": float(slope),
        "calibration_in_the_large": float(in_the_large),
        "mean_score": float(score.mean()),
        "event_rate": float(y.mean()),
        "converged": converged and converged_large,
        "reliability": {
            "mean_predicted": [float(v) for v in predicted],
            "fraction_malignant": [float(v) for v in fraction],
        },
    }
