"""Top-k sensitivity and lesions per cancer: hand-worked cases and brute-force references."""

from __future__ import annotations

import math

import numpy as np
import pytest

import lesionboost
from lesionboost.metrics import lesions_per_cancer, top_k_sensitivity


# ------------------------------------------------------------------ references
def _brute_top_k(y: np.ndarray, score: np.ndarray, patient: np.ndarray, k: int) -> float:
    """Patient by patient with Python's sort on (-score, row) keys."""
    shares = []
    for pid in dict.fromkeys(patient.tolist()):
        rows = [i for i in range(len(y)) if patient[i] == pid]
        n_malignant = sum(int(y[i]) for i in rows)
        if n_malignant == 0:
            continue
        ranked = sorted(rows, key=lambda i: (-float(score[i]), i))
        shares.append(sum(int(y[i]) for i in ranked[:k]) / n_malignant)
    return sum(shares) / len(shares)


def _scan_lesions_per_cancer(y: np.ndarray, score: np.ndarray, target: float) -> float:
    """Try every distinct score as threshold, highest first; stop at the first that
    finds at least ceil(target * n_malignant) cancers."""
    n_malignant = int(y.sum())
    needed = math.ceil(target * n_malignant - 1e-9)
    for threshold in sorted(set(score.tolist()), reverse=True):
        flagged = score >= threshold
        if int(y[flagged].sum()) >= needed:
            return int(flagged.sum()) / int(y[flagged].sum())
    raise AssertionError("unreachable: the lowest score flags every lesion")


# ------------------------------------------------------------ top-k sensitivity
def test_top_k_hand_worked() -> None:
    # Rows of three patients, interleaved on purpose.
    #   A: rows 0, 2, 4, 6, 8   y = 1, 0, 1, 0, 1   score = .9, .9, .3, .8, .1
    #   B: rows 1, 3            y = 0, 1            score = .5, .5
    #   C: rows 5, 7            y = 0, 0            (no cancer: left out of the mean)
    y = np.array([1, 0, 0, 1, 1, 0, 0, 0, 1])
    score = np.array([0.9, 0.5, 0.9, 0.5, 0.3, 0.7, 0.8, 0.6, 0.1])
    patient = np.array(["A", "B", "A", "B", "A", "C", "A", "C", "A"])
    # k=2: A ranks rows 0 (.9, first in row order), 2 (.9), 6 (.8), ... -> top 2 holds
    #      one of A's three cancers = 1/3; B's two rows are both in its top 2 -> 1/1.
    #      mean over A and B = (1/3 + 1) / 2 = 2/3
    assert top_k_sensitivity(y, score, patient, k=2) == pytest.approx(2 / 3)
    # k=1: A's top row is row 0 (malignant) -> 1/3; B's rows tie at .5 and row 1
    #      (benign) comes first -> 0/1.  mean = (1/3 + 0) / 2 = 1/6
    assert top_k_sensitivity(y, score, patient, k=1) == pytest.approx(1 / 6)
    # k=5: every lesion of every patient is examined -> 1
    assert top_k_sensitivity(y, score, patient, k=5) == 1.0


def test_top_k_ties_go_to_the_first_row() -> None:
    # B's tied lesions swapped: now the malignant one comes first in row order.
    # k=1: A = 1/3 as before, B = 1/1 -> mean (1/3 + 1) / 2 = 2/3
    y = np.array([1, 1, 0, 0, 1, 0, 0, 0, 1])
    score = np.array([0.9, 0.5, 0.9, 0.5, 0.3, 0.7, 0.8, 0.6, 0.1])
    patient = np.array(["A", "B", "A", "B", "A", "C", "A", "C", "A"])
    assert top_k_sensitivity(y, score, patient, k=1) == pytest.approx(2 / 3)


def test_top_k_default_is_15() -> None:
    # one patient, 20 lesions, the only cancer ranked 16th -> 0 with k=15, 1 with k=16
    score = np.linspace(1.0, 0.0, 20)
    y = np.zeros(20, dtype=int)
    y[15] = 1
    patient = np.zeros(20, dtype=int)
    assert top_k_sensitivity(y, score, patient) == 0.0
    assert top_k_sensitivity(y, score, patient, k=16) == 1.0


@pytest.mark.parametrize("seed", range(6))
def test_top_k_matches_brute_force_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(40, 400))
    patient = rng.integers(0, int(rng.integers(3, 25)), n)
    y = (rng.random(n) < 0.25).astype(int)
    y[0] = 1
    # one decimal: many ties within a patient
    score = np.round(rng.random(n) + 0.5 * y, 1)
    for k in (1, 3, 15):
        expected = _brute_top_k(y, score, patient, k)
        assert top_k_sensitivity(y, score, patient, k=k) == pytest.approx(expected, abs=1e-12)
    # string ids and a list input give the same value
    assert top_k_sensitivity(
        y.tolist(), score.tolist(), [f"IP_{p}" for p in patient], k=3
    ) == pytest.approx(_brute_top_k(y, score, patient, 3), abs=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"y_true": [0, 0, 0]}, "no malignant"),
        ({"y_true": [0, 1]}, "y_true has 2 values but y_score has 3"),
        ({"y_score": [0.1, float("nan"), 0.3]}, "NaN or infinite"),
        ({"y_true": [0, 2, 1]}, "0/1 labels"),
        ({"patient_id": ["a", None, "b"]}, r"patient_id is missing at row\(s\) \[1\]"),
        ({"patient_id": ["a", "b"]}, "patient_id has 2 values"),
        ({"k": 0}, "k must be an integer >= 1"),
    ],
)
def test_top_k_errors(kwargs: dict, match: str) -> None:
    args = {"y_true": [0, 1, 1], "y_score": [0.1, 0.2, 0.3], "patient_id": ["a", "a", "b"]}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        top_k_sensitivity(**args)


# ------------------------------------------------------------ lesions per cancer
def test_lesions_per_cancer_hand_worked() -> None:
    # ten lesions, four cancers (rows 0, 2, 5, 9), three lesions tied at 0.8
    y = np.array([1, 0, 1, 0, 0, 1, 0, 0, 0, 1])
    score = np.array([0.95, 0.9, 0.85, 0.8, 0.8, 0.8, 0.5, 0.4, 0.3, 0.2])
    # 50 %: 2 of 4 cancers needed; threshold 0.85 flags rows 0-2 -> 3 lesions / 2 = 1.5
    assert lesions_per_cancer(y, score, sensitivity=0.5) == 1.5
    # 75 %: 3 needed; threshold 0.8 flags rows 0-5 (the tie is flagged whole) -> 6 / 3 = 2
    assert lesions_per_cancer(y, score, sensitivity=0.75) == 2.0
    # 60 %: 2.4 -> 3 needed, same threshold as 75 % -> 2
    assert lesions_per_cancer(y, score, sensitivity=0.6) == 2.0
    # 80 % (default): 3.2 -> 4 needed; threshold 0.2 flags all ten -> 10 / 4 = 2.5
    assert lesions_per_cancer(y, score) == 2.5


def test_lesions_per_cancer_perfect_ranking_is_one() -> None:
    y = np.array([0, 0, 1, 1, 0, 1])
    score = np.array([0.1, 0.2, 0.9, 0.8, 0.3, 0.7])
    for target in (0.3, 0.8, 1.0):
        assert lesions_per_cancer(y, score, sensitivity=target) == 1.0


@pytest.mark.parametrize("seed", range(6))
def test_lesions_per_cancer_matches_threshold_scan(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(30, 2000))
    y = (rng.random(n) < rng.uniform(0.02, 0.3)).astype(int)
    y[:2] = [0, 1]
    score = np.round(rng.normal(size=n) + y * rng.uniform(0.5, 2.5), int(rng.integers(0, 3)))
    for target in (0.1, 0.5, 0.8, 0.9, 0.95, 1.0):
        assert lesions_per_cancer(y, score, sensitivity=target) == pytest.approx(
            _scan_lesions_per_cancer(y, score, target), rel=1e-12
        )


def test_lesions_per_cancer_only_malignant() -> None:
    # no benign lesion: every flagged lesion is a cancer
    assert lesions_per_cancer([1, 1, 1], [0.3, 0.2, 0.1], sensitivity=0.9) == 1.0


@pytest.mark.parametrize(
    ("y", "score", "sensitivity", "match"),
    [
        ([0, 0], [0.1, 0.2], 0.8, "no malignant"),
        ([0, 1], [0.1, 0.2], 0.0, r"sensitivity must lie in \(0, 1\]"),
        ([0, 1], [0.1, 0.2], 1.5, r"sensitivity must lie in \(0, 1\]"),
        ([0, 1], [0.1, float("inf")], 0.8, "NaN or infinite"),
        ([0, 1, 1], [0.1, 0.2], 0.8, "pass one score per label"),
    ],
)
def test_lesions_per_cancer_errors(y: list, score: list, sensitivity: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        lesions_per_cancer(y, score, sensitivity=sensitivity)


def test_public_names() -> None:
    assert lesionboost.top_k_sensitivity is top_k_sensitivity
    assert lesionboost.lesions_per_cancer is lesions_per_cancer
    assert {"top_k_sensitivity", "lesions_per_cancer"} <= set(lesionboost.metrics.__all__)
    assert {"top_k_sensitivity", "lesions_per_cancer"} <= set(lesionboost.__all__)
