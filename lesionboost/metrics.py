"""The official ISIC 2024 metric: partial AUC above a minimum true-positive rate.

:func:`pauc_above_tpr` reproduces the Kaggle scorer ("ISIC pAUC-aboveTPR"): flip
labels and scores so that sklearn's ``roc_curve`` can be cut at
``max_fpr = 1 - min_tpr``, interpolate one point at that FPR and integrate with
the trapezoid rule. The result is the raw area of the ROC curve above the line
``TPR = min_tpr``: 0.2 for a perfect ranking, 0.02 for a constant score and 0
for a perfectly inverted one (with the default ``min_tpr=0.8``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import auc, make_scorer, roc_curve

__all__ = ["pauc_above_tpr", "pauc_scorer"]


def _as_1d(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}.")
    return array


def pauc_above_tpr(
    y_true: Sequence[int] | np.ndarray,
    y_score: Sequence[float] | np.ndarray,
    *,
    min_tpr: float = 0.80,
) -> float:
    """Partial area under the ROC curve above ``min_tpr`` (the ISIC 2024 metric).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Labels, 1 = malignant, 0 = benign.
    y_score : array-like of shape (n_samples,)
        Higher means more likely malignant. Ties are handled as ``roc_curve`` does.
    min_tpr : float, default=0.80
        The true-positive rate above which the area is measured.

    Returns
    -------
    float
        The raw partial area, in ``[0, 1 - min_tpr]``.

    Raises
    ------
    ValueError
        Lengths differ, a score is NaN or infinite, labels are not 0/1, or only
        one class is present.

    Examples
    --------
    >>> pauc_above_tpr([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    0.2
    >>> round(pauc_above_tpr([0, 0, 1, 1], [0.5, 0.5, 0.5, 0.5]), 6)
    0.02
    """
    truth = _as_1d(y_true, "y_true")
    score = _as_1d(y_score, "y_score").astype(np.float64, copy=False)
    if truth.shape[0] != score.shape[0]:
        raise ValueError(
            f"y_true has {truth.shape[0]} values but y_score has {score.shape[0]}; "
            "pass one score per label."
        )
    if not 0.0 < min_tpr < 1.0:
        raise ValueError(f"min_tpr must lie strictly between 0 and 1, got {min_tpr!r}.")
    if not np.isfinite(score).all():
        position = int(np.flatnonzero(~np.isfinite(score))[0])
        raise ValueError(
            f"y_score holds NaN or infinite values (first at position {position}); "
            "every lesion needs a finite score."
        )
    labels = set(np.unique(truth).tolist())
    if not labels <= {0, 1}:  # True/False compare equal to 1/0
        raise ValueError(f"y_true must hold 0/1 labels, got {sorted(labels)[:5]}.")
    if len(labels) < 2:
        raise ValueError(
            "pAUC is undefined when y_true holds only one class "
            f"({'all malignant' if 1 in labels else 'all benign'}); score a set with "
            "both benign and malignant lesions."
        )
    # Official recipe: benign becomes the positive class so the cut is an FPR cut.
    flipped_truth = np.abs(truth.astype(np.int64) - 1)
    flipped_score = -score
    max_fpr = abs(1.0 - min_tpr)
    fpr, tpr, _ = roc_curve(flipped_truth, flipped_score)
    stop = np.searchsorted(fpr, max_fpr, "right")
    x_interp = [fpr[stop - 1], fpr[stop]]
    y_interp = [tpr[stop - 1], tpr[stop]]
    tpr = np.append(tpr[:stop], np.interp(max_fpr, x_interp, y_interp))
    fpr = np.append(fpr[:stop], max_fpr)
    return float(auc(fpr, tpr))


def _pauc_score_func(y_true: np.ndarray, y_score: np.ndarray, min_tpr: float = 0.80) -> float:
    score = np.asarray(y_score)
    if score.ndim == 2:  # predict_proba output: keep the malignant column
        score = score[:, -1]
    return pauc_above_tpr(y_true, score, min_tpr=min_tpr)


#: A scikit-learn scorer for :func:`pauc_above_tpr` (uses ``predict_proba``).
pauc_scorer = make_scorer(
    _pauc_score_func, greater_is_better=True, response_method="predict_proba"
)
