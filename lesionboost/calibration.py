"""Calibrated risk: map a model's probabilities to the population's risk of malignancy.

A model trained on downsampled negatives, bagged and rank-blended ranks lesions
well but its probabilities need not match the frequency of malignancy. A
:class:`ScoreCalibrator` is a logistic recalibration fitted on out-of-fold scores
(each lesion scored by a model that never saw its patient)::

    p_calibrated = sigmoid(intercept + slope * logit(p))

Two numbers, stored as JSON in a saved model, so a calibrated
:class:`~lesionboost.LesionBoostClassifier` means "probability that this lesion is
malignant" at the training prevalence. The map is increasing, so the ranking and
every rank metric (pAUC, AUC, top-15 sensitivity) are unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import optimize, special

__all__ = ["ScoreCalibrator"]

#: Probabilities are clipped to [EPS, 1 - EPS] before the logit.
_EPS = 1e-7


def _logit(p: np.ndarray) -> np.ndarray:
    clipped = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1.0 - _EPS)
    return np.asarray(special.logit(clipped))


@dataclass(frozen=True)
class ScoreCalibrator:
    """A fitted logistic recalibration ``sigmoid(intercept + slope * logit(p))``.

    Parameters
    ----------
    intercept, slope : float
        The map; ``slope`` is positive, so the order of the scores is kept.
    n, n_malignant : int
        The out-of-fold lesions it was fitted on, and how many were malignant.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = (rng.random(20_000) < 0.01).astype(int)
    >>> p = np.clip(0.02 + 0.3 * y * rng.random(20_000), 0, 1)  # too high for benign lesions
    >>> calibrator = ScoreCalibrator.fit(y, p)
    >>> round(float(calibrator.transform(p).mean()), 3), round(float(y.mean()), 3)
    (0.01, 0.01)
    >>> ScoreCalibrator.from_dict(calibrator.to_dict()) == calibrator
    True
    """

    intercept: float
    slope: float
    n: int
    n_malignant: int

    @classmethod
    def fit(
        cls, y_true: Sequence[int] | np.ndarray, y_score: Sequence[float] | np.ndarray
    ) -> ScoreCalibrator:
        """Fit the map by maximum likelihood on out-of-fold probabilities.

        Parameters
        ----------
        y_true : array-like of shape (n_samples,)
            0/1 labels.
        y_score : array-like of shape (n_samples,)
            Out-of-fold probabilities in [0, 1].

        Raises
        ------
        ValueError
            Lengths differ, labels are not 0/1 of both classes, scores are not
            probabilities, or the fitted slope is not positive (the scores do not
            rank malignant lesions higher, so no increasing map can calibrate them).
        """
        y = np.asarray(y_true).ravel()
        p = np.asarray(y_score, dtype=np.float64).ravel()
        if y.shape != p.shape:
            raise ValueError(
                f"ScoreCalibrator.fit: {y.shape[0]} labels but {p.shape[0]} scores; pass one "
                "out-of-fold score per labelled lesion."
            )
        if not set(np.unique(y).tolist()) == {0, 1}:
            raise ValueError(
                "ScoreCalibrator.fit needs 0/1 labels with both benign and malignant lesions."
            )
        if not (np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()):
            raise ValueError(
                "ScoreCalibrator.fit needs probabilities in [0, 1] (predict_proba's column 1), "
                "not raw margins."
            )
        x = _logit(p)
        target = y.astype(np.float64)

        def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
            z = theta[0] + theta[1] * x
            value = float(np.sum(np.logaddexp(0.0, z) - target * z))
            residual = special.expit(z) - target
            return value, np.array([residual.sum(), (residual * x).sum()])

        result = optimize.minimize(
            loss, np.array([0.0, 1.0]), jac=True, method="L-BFGS-B",
            options={"ftol": 1e-14, "gtol": 1e-10, "maxiter": 500},
        )  # fmt: skip
        intercept, slope = (float(v) for v in result.x)
        if not slope > 0:
            raise ValueError(
                f"ScoreCalibrator.fit: the fitted slope is {slope:.3g}; the scores do not rank "
                "malignant lesions above benign ones, so they cannot be calibrated."
            )
        return cls(intercept, slope, int(y.shape[0]), int(target.sum()))

    def transform(self, y_score: Sequence[float] | np.ndarray) -> np.ndarray:
        """Calibrated probabilities of ``y_score`` (same shape)."""
        p = np.asarray(y_score, dtype=np.float64)
        return np.asarray(special.expit(self.intercept + self.slope * _logit(p)))

    def to_dict(self) -> dict[str, Any]:
        """The calibrator as plain JSON-ready values."""
        return {"method": "logistic", **asdict(self)}

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> ScoreCalibrator:
        """Rebuild from :meth:`to_dict`; a malformed state raises ``ValueError``."""
        if state.get("method") != "logistic":
            raise ValueError(f"unknown calibration method {state.get('method')!r}")
        intercept, slope = state.get("intercept"), state.get("slope")
        n, n_malignant = state.get("n"), state.get("n_malignant")
        if not (
            isinstance(intercept, (int, float))
            and isinstance(slope, (int, float))
            and np.isfinite(intercept)
            and np.isfinite(slope)
        ):
            raise ValueError(
                f"calibration intercept/slope must be finite numbers, got {intercept!r}, {slope!r}"
            )
        if not slope > 0:
            raise ValueError(f"calibration slope must be positive, got {slope}")
        if not (isinstance(n, int) and isinstance(n_malignant, int) and 0 <= n_malignant <= n):
            raise ValueError(
                "calibration n and n_malignant must be integers, 0 <= n_malignant <= n"
            )
        return cls(float(intercept), float(slope), n, n_malignant)
