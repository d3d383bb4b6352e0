""":func:`evaluate`: checks the inputs and assembles an :class:`Evaluation`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from .._utils import to_polars
from ..metrics import (
    _as_1d,
    _sensitivity_threshold,
    _top_k_counts,
    lesions_per_cancer,
    pauc_above_tpr,
)
from ._bootstrap import (
    _bootstrap_roc,
    _bootstrap_top_k,
    _patient_codes,
    _patient_draws,
    _percentile_interval,
)
from ._calibration import _calibration
from ._result import SENSITIVITIES, TOP_K, Evaluation
from ._subgroups import _subgroup_labels, _subgroup_levels, _weakest_overall


def evaluate(
    y_true: Sequence[int] | np.ndarray,
    y_score: Sequence[float] | np.ndarray,
    metadata: Any,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    min_tpr: float = 0.8,
) -> Evaluation:
    """Evaluate malignancy scores overall, at operating points and per subgroup.

    Parameters
    ----------
    y_true : array-like of shape (n_lesions,)
        Labels, 1 = malignant, 0 = benign; both classes must be present.
    y_score : array-like of shape (n_lesions,)
        Finite scores, higher = more suspicious. Calibration needs probabilities
        in ``[0, 1]``; other scores get every result but calibration.
    metadata : polars.DataFrame or pandas.DataFrame
        One row per score, in the same order, with ``patient_id``. Optional columns
        give the subgroups: ``sex``, ``age_approx``, ``anatom_site_general``,
        ``attribution``, ``tbp_tile_type``, and ``tbp_lv_Lext`` with
        ``tbp_lv_Bext`` (skin tone); a missing column skips its subgroup. Missing
        values form the level ``"unknown"``.
    n_boot : int, default=1000
        Patient-level bootstrap replicates (0 skips the intervals).
    seed : int, default=0
        Seed of ``numpy.random.default_rng`` for the bootstrap; the same patient
        draws serve the overall and every subgroup interval.
    min_tpr : float, default=0.8
        TPR above which the pAUC is measured.

    Returns
    -------
    Evaluation

    Raises
    ------
    SchemaError
        ``metadata`` has no ``patient_id`` column, or a patient id is missing.
    ValueError
        Lengths differ, labels are not 0/1, a class is absent, a score is NaN or
        infinite, or an argument is out of range.

    Notes
    -----
    Skin tone uses the individual typology angle of the skin around the lesion,
    ``ITA = arctan((L - 50) / b) * 180 / pi`` with ``L = tbp_lv_Lext`` and
    ``b = tbp_lv_Bext``, in Chardon's bands: very light > 55, light (41, 55],
    intermediate (28, 41], tan (10, 28], brown (-30, 10], dark <= -30.
    Bootstrap replicates with a single class are skipped.

    Examples
    --------
    >>> import numpy as np
    >>> import polars as pl
    >>> rng = np.random.default_rng(0)
    >>> meta = pl.DataFrame({"patient_id": np.repeat([f"p{i}" for i in range(40)], 10),
    ...                      "sex": np.repeat(["female", "male"], 200)})
    >>> y = (rng.random(400) < 0.1).astype(int)
    >>> score = np.clip(0.1 + 0.4 * y + rng.normal(0, 0.15, 400), 0, 1)
    >>> result = evaluate(y, score, meta, n_boot=200, seed=0)
    >>> result.n, result.n_patients, sorted(result.subgroups)
    (400, 40, ['sex'])
    >>> low, high = result.pauc_ci
    >>> bool(low <= result.pauc <= high)
    True
    """
    frame = to_polars(metadata, what="metadata")
    truth, score = _checked_inputs(y_true, y_score, frame.height)
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 0:
        raise ValueError(f"n_boot must be an integer >= 0 (0 = no intervals), got {n_boot!r}.")
    if not 0.0 < min_tpr < 1.0:
        raise ValueError(f"min_tpr must lie strictly between 0 and 1, got {min_tpr!r}.")
    codes, n_patients = _patient_codes(frame)
    counts = _patient_draws(n_patients, int(n_boot), seed)

    boot_pauc, boot_auc, both = _bootstrap_roc(truth, score, codes, counts, min_tpr)
    found, malignant = _top_k_counts(truth, score, codes, TOP_K)
    top15 = float(np.mean(found[malignant > 0] / malignant[malignant > 0]))
    boot_top15 = _bootstrap_top_k(found, malignant, counts)

    points = [_operating_point(truth, score, s, n_patients) for s in SENSITIVITIES]
    subgroups = {
        name: _subgroup_levels(name, truth, score, codes, counts, labels, min_tpr)
        for name, labels in _subgroup_labels(frame).items()
    }
    return Evaluation(
        n=int(truth.size),
        n_malignant=int(truth.sum()),
        n_patients=n_patients,
        min_tpr=float(min_tpr),
        n_boot=int(n_boot),
        seed=int(seed),
        n_boot_used=int(both.sum()),
        pauc=pauc_above_tpr(truth, score, min_tpr=min_tpr),
        pauc_ci=_percentile_interval(boot_pauc[both]),
        auc=float(roc_auc_score(truth, score)),
        auc_ci=_percentile_interval(boot_auc[both]),
        top15_sensitivity=top15,
        top15_sensitivity_ci=_percentile_interval(boot_top15[both]),
        lesions_per_cancer={s: lesions_per_cancer(truth, score, s) for s in SENSITIVITIES},
        operating_points=points,
        calibration=_calibration(truth, score),
        subgroups=subgroups,
        weakest_subgroup=_weakest_overall(subgroups),
    )


# ------------------------------------------------------------------ input checks
def _checked_inputs(
    y_true: Sequence[int] | np.ndarray, y_score: Sequence[float] | np.ndarray, n_rows: int
) -> tuple[np.ndarray, np.ndarray]:
    truth = _as_1d(y_true, "y_true")
    score = _as_1d(y_score, "y_score")
    if not truth.shape[0] == score.shape[0] == n_rows:
        raise ValueError(
            f"evaluate: y_true has {truth.shape[0]} values, y_score {score.shape[0]} and "
            f"metadata {n_rows} rows; pass one label, one score and one metadata row per "
            "lesion, in the same order."
        )
    if truth.dtype.kind not in "biuf":
        raise ValueError(
            f"evaluate: y_true must hold the numbers 0 (benign) and 1 (malignant), got dtype "
            f"{truth.dtype}; map the labels to 0/1."
        )
    bad = ~np.isin(truth, (0, 1))
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ValueError(
            f"evaluate: y_true must hold 0 (benign) or 1 (malignant), got "
            f"{sorted({repr(v) for v in truth[rows[:20]].tolist()})[:5]} at row(s) "
            f"{rows[:5].tolist()}; map the labels to 0/1 and drop unlabelled lesions."
        )
    truth = truth.astype(np.int64)
    if truth.sum() == 0 or truth.sum() == truth.size:
        missing = "malignant (1)" if truth.sum() == 0 else "benign (0)"
        raise ValueError(
            f"evaluate: y_true holds no {missing} lesion among {truth.size}; the metrics "
            "compare malignant with benign lesions, so evaluate a set holding both."
        )
    if score.dtype.kind not in "biuf":
        raise ValueError(f"evaluate: y_score must be numeric, got dtype {score.dtype}.")
    score = score.astype(np.float64)
    if not np.isfinite(score).all():
        rows = np.flatnonzero(~np.isfinite(score))
        raise ValueError(
            f"evaluate: y_score holds {rows.size} NaN or infinite value(s), at row(s) "
            f"{rows[:5].tolist()}{' ...' if rows.size > 5 else ''}; every lesion needs a "
            "finite score."
        )
    return truth, score


# ---------------------------------------------------------------- operating points
def _operating_point(
    truth: np.ndarray, score: np.ndarray, target: float, n_patients: int
) -> dict[str, float]:
    threshold, flagged = _sensitivity_threshold(truth, score, target)
    n_flagged = int(flagged.sum())
    positives = int(truth.sum())
    negatives = int(truth.size - positives)
    return {
        "target_sensitivity": float(target),
        "threshold": threshold,
        "sensitivity": float(truth[flagged].sum() / positives),
        "specificity": float(1.0 - (n_flagged - truth[flagged].sum()) / negatives),
        "n_flagged": n_flagged,
        "referrals_per_1000": 1000.0 * n_flagged / truth.size,
        "referrals_per_patient": n_flagged / n_patients,
    }
