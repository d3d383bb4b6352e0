"""The official pAUC above 80 % TPR, checked against an independent integration."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_score

from lesionboost import pauc_above_tpr, pauc_scorer


def _brute_force_pauc(y: np.ndarray, score: np.ndarray, min_tpr: float = 0.8) -> float:
    """Area under the (un-flipped) ROC curve above the line TPR = min_tpr.

    Built without roc_curve: ROC vertices from cumulative counts over unique
    thresholds (ties form one diagonal segment), then the exact integral of
    max(tpr - min_tpr, 0) over each linear segment.
    """
    order = np.argsort(-score, kind="mergesort")
    s, t = score[order], y[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]
    tp = np.cumsum(t)[last_of_tie]
    fp = np.cumsum(1 - t)[last_of_tie]
    tpr = np.r_[0.0, tp / t.sum()]
    fpr = np.r_[0.0, fp / (1 - t).sum()]
    area = 0.0
    for f0, f1, t0, t1 in zip(fpr[:-1], fpr[1:], tpr[:-1], tpr[1:], strict=True):
        if f1 == f0:
            continue
        a0, a1 = t0 - min_tpr, t1 - min_tpr
        if a0 >= 0 and a1 >= 0:
            area += (f1 - f0) * (a0 + a1) / 2
        elif a0 > 0 or a1 > 0:
            crossing = f0 + (f1 - f0) * (-a0) / (a1 - a0)
            area += 0.5 * (f1 - crossing) * a1 if a1 > 0 else 0.5 * (crossing - f0) * a0
    return area


@pytest.mark.parametrize("seed", range(8))
def test_matches_brute_force_integration_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 3000))
    y = (rng.random(n) < rng.uniform(0.02, 0.4)).astype(int)
    y[:2] = [0, 1]
    # rounded scores create many ties; the shift makes them informative
    score = np.round(rng.normal(size=n) + y * rng.uniform(0, 3), int(rng.integers(0, 3)))
    assert pauc_above_tpr(y, score) == pytest.approx(_brute_force_pauc(y, score), abs=1e-9)
    for min_tpr in (0.5, 0.88):
        assert pauc_above_tpr(y, score, min_tpr=min_tpr) == pytest.approx(
            _brute_force_pauc(y, score, min_tpr), abs=1e-9
        )


def test_equals_the_mcclish_form_used_by_public_notebooks() -> None:
    rng = np.random.default_rng(7)
    y = (rng.random(20_000) < 0.01).astype(int)
    score = rng.normal(size=y.size) + 2.5 * y
    s = roc_auc_score(np.abs(y - 1), -score, max_fpr=0.2)
    assert pauc_above_tpr(y, score) == pytest.approx(0.02 + 0.36 * (s - 0.5), abs=1e-12)


def test_reference_values() -> None:
    y = np.array([0, 0, 0, 1, 1, 0, 1, 0])
    perfect = y + 0.0
    assert pauc_above_tpr(y, perfect) == pytest.approx(0.2)
    assert pauc_above_tpr(y, np.full(y.size, 0.3)) == pytest.approx(0.02)
    assert pauc_above_tpr(y, -perfect) == pytest.approx(0.0)
    assert 0.0 <= pauc_above_tpr(y, np.arange(y.size)) <= 0.2


@pytest.mark.parametrize(
    ("y", "score", "message"),
    [
        ([0, 0, 0], [0.1, 0.2, 0.3], "only one class"),
        ([0, 1, 1], [0.1, np.nan, 0.3], "NaN or infinite"),
        ([0, 1], [0.1, 0.2, 0.3], "2 values but y_score has 3"),
        ([0, 2, 1], [0.1, 0.2, 0.3], "0/1 labels"),
    ],
)
def test_clear_errors(y: list[int], score: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        pauc_above_tpr(y, score)


def test_scorer_uses_predict_proba_in_cross_validation() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 3))
    y = (X[:, 0] + 0.3 * rng.normal(size=600) > 1.0).astype(int)
    scores = cross_val_score(LogisticRegression(), X, y, cv=3, scoring=pauc_scorer)
    assert scores.shape == (3,)
    assert np.all(scores > 0.15)  # a nearly separable problem scores close to the 0.2 maximum
    model = LogisticRegression().fit(X, y)
    assert pauc_scorer(model, X, y) == pytest.approx(
        pauc_above_tpr(y, model.predict_proba(X)[:, 1])
    )
