"""The official ISIC 2024 metric: partial AUC above a minimum true-positive rate.

:func:`pauc_above_tpr` reproduces the Kaggle scorer ("ISIC pAUC-aboveTPR"): flip
labels and scores so that sklearn's ``roc_curve`` can be cut at
``max_fpr = 1 - min_tpr``, interpolate one point at that FPR and integrate with
the trapezoid rule. The result is the raw area of the ROC curve above the line
``TPR = min_tpr``: 0.2 for a perfect ranking, 0.02 for a constant score and 0
for a perfectly inverted one (with the default ``min_tpr=0.8``).

Two clinical read-outs complement it: :func:`top_k_sensitivity` (the challenge's
secondary metric: the share of each patient's cancers among that patient's ``k``
most suspicious lesions) and :func:`lesions_per_cancer` (how many lesions a
clinician must examine per cancer found at a target sensitivity).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import auc, make_scorer, roc_curve

__all__ = ["pauc_above_tpr", "pauc_scorer", "top_k_sensitivity", "lesions_per_cancer"]


def _as_1d(values: Sequence[Any] | np.ndarray, name: str) -> np.ndarray:
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
    >>> round(pauc_above_tpr([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]), 6)
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
pauc_scorer = make_scorer(_pauc_score_func, greater_is_better=True, response_method="predict_proba")


def _checked_labels_and_scores(
    y_true: Sequence[int] | np.ndarray, y_score: Sequence[float] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """0/1 labels and finite float scores of equal length with a malignant lesion."""
    truth = _as_1d(y_true, "y_true")
    score = _as_1d(y_score, "y_score").astype(np.float64, copy=False)
    if truth.shape[0] != score.shape[0]:
        raise ValueError(
            f"y_true has {truth.shape[0]} values but y_score has {score.shape[0]}; "
            "pass one score per label."
        )
    if not np.isfinite(score).all():
        position = int(np.flatnonzero(~np.isfinite(score))[0])
        raise ValueError(
            f"y_score holds NaN or infinite values (first at position {position}); "
            "every lesion needs a finite score."
        )
    labels = set(np.unique(truth).tolist())
    if not labels <= {0, 1}:
        raise ValueError(f"y_true must hold 0/1 labels, got {sorted(labels)[:5]}.")
    if 1 not in labels:
        raise ValueError(
            "y_true holds no malignant lesion (label 1), so no cancer can be found; "
            "score a set that contains at least one malignant lesion."
        )
    return truth.astype(np.int64), score


def top_k_sensitivity(
    y_true: Sequence[int] | np.ndarray,
    y_score: Sequence[float] | np.ndarray,
    patient_id: Sequence[object] | np.ndarray,
    k: int = 15,
) -> float:
    """Mean per-patient share of malignant lesions among the patient's ``k`` top-scored lesions.

    The ISIC 2024 secondary metric: for every patient with at least one malignant
    lesion, the patient's lesions are ranked by descending score and the share of
    the patient's malignant lesions found among the first ``k`` is taken; the
    result is the mean of these shares over those patients (each patient counts
    once, whatever the number of lesions).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Labels, 1 = malignant, 0 = benign.
    y_score : array-like of shape (n_samples,)
        Higher means more likely malignant.
    patient_id : array-like of shape (n_samples,)
        Patient of every lesion; no missing values.
    k : int, default=15
        Lesions per patient a clinician examines.

    Returns
    -------
    float
        In ``[0, 1]``; 1 when every malignant lesion is among its patient's top ``k``.

    Raises
    ------
    ValueError
        Lengths differ, a score is NaN or infinite, labels are not 0/1, a patient
        id is missing, ``k`` is not a positive integer, or no lesion is malignant.

    Notes
    -----
    Ties at the ``k``-th place go to the lesion that comes first in row order
    (a stable sort by descending score).

    Examples
    --------
    Patient ``a`` has its malignant lesion in 2nd place, patient ``b`` in 3rd:

    >>> y = [0, 1, 0, 0, 0, 1]
    >>> s = [0.9, 0.8, 0.1, 0.7, 0.6, 0.5]
    >>> p = ["a", "a", "a", "b", "b", "b"]
    >>> top_k_sensitivity(y, s, p, k=2)
    0.5
    >>> top_k_sensitivity(y, s, p, k=3)
    1.0
    """
    truth, score = _checked_labels_and_scores(y_true, y_score)
    ids = _as_1d(patient_id, "patient_id")
    if ids.shape[0] != truth.shape[0]:
        raise ValueError(
            f"patient_id has {ids.shape[0]} values but y_true has {truth.shape[0]}; "
            "pass the patient of every lesion."
        )
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}.")
    missing = np.array(
        [v is None or (isinstance(v, float) and v != v) for v in ids.tolist()], dtype=bool
    )
    if missing.any():
        rows = np.flatnonzero(missing)
        raise ValueError(
            f"patient_id is missing at row(s) {rows[:5].tolist()}"
            f"{' ...' if rows.size > 5 else ''}; fill in the patient of every lesion or drop "
            "those rows."
        )
    _, codes = np.unique(ids.astype(str), return_inverse=True)
    found, malignant = _top_k_counts(truth, score, codes.ravel(), k)
    has_cancer = malignant > 0
    return float(np.mean(found[has_cancer] / malignant[has_cancer]))


def _top_k_counts(
    truth: np.ndarray, score: np.ndarray, codes: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per patient code: malignant lesions among the top ``k``, and malignant lesions.

    ``codes`` are integer patient codes in ``[0, n_patients)``. Lesions are ranked
    within their patient by descending score, ties in row order.
    """
    n = truth.shape[0]
    # patient, then descending score, then row order (lexsort keys: last is primary)
    order = np.lexsort((np.arange(n), -score, codes))
    sorted_codes = codes[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_codes)) + 1]
    sizes = np.diff(np.r_[starts, n])
    rank = np.arange(n) - np.repeat(starts, sizes)
    in_top = np.empty(n, dtype=bool)
    in_top[order] = rank < k
    malignant = np.bincount(codes, weights=truth)
    found = np.bincount(codes, weights=truth * in_top, minlength=malignant.size)
    return found, malignant


def _sensitivity_threshold(
    truth: np.ndarray, score: np.ndarray, sensitivity: float
) -> tuple[float, np.ndarray]:
    """Highest threshold whose sensitivity reaches ``sensitivity``, and the flagged mask.

    A lesion is flagged when its score is at least the threshold. Uses
    ``roc_curve(drop_intermediate=False)`` so that every distinct score is a
    candidate threshold.
    """
    if not 0.0 < sensitivity <= 1.0:
        raise ValueError(
            f"sensitivity must lie in (0, 1], got {sensitivity!r}; pass e.g. 0.8 for 80 %."
        )
    with warnings.catch_warnings():
        # without benign lesions the FPR is undefined; only the TPR is used here
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        _, tpr, thresholds = roc_curve(truth, score, drop_intermediate=False)
    # tpr rises as the threshold falls; guard the last point against rounding
    tpr[-1] = 1.0
    position = int(np.argmax(tpr >= sensitivity - 1e-12))
    threshold = float(thresholds[position])
    return threshold, score >= threshold


def lesions_per_cancer(
    y_true: Sequence[int] | np.ndarray,
    y_score: Sequence[float] | np.ndarray,
    sensitivity: float = 0.8,
) -> float:
    """Lesions flagged per malignant lesion flagged, at a target sensitivity.

    The threshold is the highest one whose sensitivity (share of malignant lesions
    with ``score >= threshold``) reaches ``sensitivity``. The result is the number
    of lesions flagged at that threshold divided by the number of malignant ones
    among them: the lesions a clinician examines per cancer found (1 is perfect).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Labels, 1 = malignant, 0 = benign.
    y_score : array-like of shape (n_samples,)
        Higher means more likely malignant. Lesions tied at the threshold are all flagged.
    sensitivity : float, default=0.8
        Target sensitivity in ``(0, 1]``.

    Returns
    -------
    float
        At least 1.

    Raises
    ------
    ValueError
        Lengths differ, a score is NaN or infinite, labels are not 0/1, no lesion
        is malignant, or ``sensitivity`` is outside ``(0, 1]``.

    Examples
    --------
    Two cancers out of five lesions; flagging the top three finds both:

    >>> lesions_per_cancer([1, 0, 1, 0, 0], [0.9, 0.8, 0.7, 0.2, 0.1], sensitivity=1.0)
    1.5
    >>> lesions_per_cancer([1, 0, 1, 0, 0], [0.9, 0.8, 0.7, 0.2, 0.1], sensitivity=0.5)
    1.0
    """
    truth, score = _checked_labels_and_scores(y_true, y_score)
    _, flagged = _sensitivity_threshold(truth, score, sensitivity)
    return float(flagged.sum() / truth[flagged].sum())
