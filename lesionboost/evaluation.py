"""A clinical evaluation of malignancy scores: bootstrap intervals, calibration, subgroups.

:func:`evaluate` takes labels, scores and the metadata of the scored lesions and
returns an :class:`Evaluation`:

- the ISIC 2024 pAUC above 80 % TPR, the AUC and the top-15 sensitivity, each with
  a 95 % percentile interval from a *patient-level* bootstrap (patients are drawn
  with replacement, all their lesions follow, because lesions of one patient are
  correlated);
- operating points at 80, 90 and 95 % sensitivity: threshold, specificity,
  referrals per 1,000 lesions and per patient, lesions examined per cancer found;
- calibration: Brier score, calibration intercept and slope, calibration in the
  large and a reliability curve with quantile bins;
- subgroups: sex, age band, anatomical site, centre (``attribution``), tile type
  and skin tone (individual typology angle), with the weakest level flagged.

:meth:`Evaluation.to_dict` gives JSON-ready plain Python and
:meth:`Evaluation.to_html` a self-contained HTML fragment of tables.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from scipy.optimize import minimize
from scipy.special import expit
from sklearn.calibration import calibration_curve
from sklearn.metrics import roc_auc_score

from ._utils import to_polars
from .exceptions import SchemaError
from .metrics import (
    _as_1d,
    _sensitivity_threshold,
    _top_k_counts,
    lesions_per_cancer,
    pauc_above_tpr,
)

__all__ = ["evaluate", "Evaluation"]

#: Target sensitivities of the operating points and of lesions per cancer.
SENSITIVITIES: tuple[float, ...] = (0.80, 0.90, 0.95)
#: Lesions per patient examined by the top-k sensitivity.
TOP_K = 15
#: A subgroup level needs this many malignant lesions to be flagged as the weakest.
MIN_MALIGNANT_FOR_WEAKEST = 5
#: Bins of the reliability curve (quantile bins: equal numbers of lesions).
RELIABILITY_BINS = 10
#: Scores are clipped to ``[eps, 1 - eps]`` before the logit of the calibration fit.
LOGIT_EPS = 1e-7
#: Age bands (lower bound inclusive) and their labels.
AGE_BANDS: tuple[tuple[float, str], ...] = (
    (0.0, "<40"),
    (40.0, "40-59"),
    (60.0, "60-74"),
    (75.0, ">=75"),
)
#: Chardon's skin-tone bands on the individual typology angle (lower bound exclusive).
ITA_BANDS: tuple[tuple[float, str], ...] = (
    (55.0, "very light"),
    (41.0, "light"),
    (28.0, "intermediate"),
    (10.0, "tan"),
    (-30.0, "brown"),
    (-math.inf, "dark"),
)
UNKNOWN = "unknown"
# subgroup -> metadata columns it needs
_SUBGROUP_COLUMNS: dict[str, tuple[str, ...]] = {
    "sex": ("sex",),
    "age_band": ("age_approx",),
    "anatom_site_general": ("anatom_site_general",),
    "attribution": ("attribution",),
    "tbp_tile_type": ("tbp_tile_type",),
    "skin_tone": ("tbp_lv_Lext", "tbp_lv_Bext"),
}
# bootstrap replicates x lesions held in memory at once
_BATCH_CELLS = 2_000_000

Interval = tuple[float, float]


@dataclass(frozen=True)
class Evaluation:
    """The result of :func:`evaluate`.

    Attributes
    ----------
    n, n_malignant, n_patients : int
        Lesions, malignant lesions and patients scored.
    min_tpr : float
        TPR above which the pAUC is measured.
    n_boot, seed : int
        Bootstrap replicates drawn and their seed.
    n_boot_used : int
        Replicates with both classes, from which the intervals are computed.
    pauc, auc, top15_sensitivity : float
        Point estimates on all lesions.
    pauc_ci, auc_ci, top15_sensitivity_ci : tuple of float or None
        95 % percentile bootstrap intervals (None without usable replicates).
    lesions_per_cancer : dict of float to float
        Lesions flagged per malignant lesion flagged, keyed by target sensitivity.
    operating_points : list of dict
        Per target sensitivity: ``threshold``, ``sensitivity``, ``specificity``,
        ``n_flagged``, ``referrals_per_1000`` (lesions) and ``referrals_per_patient``.
    calibration : dict or None
        ``brier``, ``intercept`` and ``slope`` (logistic regression of the label on
        ``logit(score)``), ``calibration_in_the_large`` (intercept with the slope
        fixed at 1), ``mean_score``, ``event_rate``, ``converged`` and
        ``reliability`` (``mean_predicted`` and ``fraction_malignant`` per quantile
        bin). None when a score lies outside ``[0, 1]`` (not a probability).
    subgroups : dict of str to list of dict
        Per subgroup, one dict per level: ``level``, ``n``, ``n_malignant``,
        ``pauc`` (None with a single class), ``pauc_ci``, ``auc`` and ``weakest``
        (True on the level with the lowest pAUC among those with at least
        ``MIN_MALIGNANT_FOR_WEAKEST`` malignant lesions).
    weakest_subgroup : dict or None
        ``subgroup``, ``level``, ``pauc`` and ``n_malignant`` of the weakest level
        over all subgroups.
    """

    n: int
    n_malignant: int
    n_patients: int
    min_tpr: float
    n_boot: int
    seed: int
    n_boot_used: int
    pauc: float
    pauc_ci: Interval | None
    auc: float
    auc_ci: Interval | None
    top15_sensitivity: float
    top15_sensitivity_ci: Interval | None
    lesions_per_cancer: dict[float, float]
    operating_points: list[dict[str, float]] = field(repr=False)
    calibration: dict[str, Any] | None = field(repr=False)
    subgroups: dict[str, list[dict[str, Any]]] = field(repr=False)
    weakest_subgroup: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready plain Python: lists, dicts, str, int, float, bool and None only.

        Intervals become two-element lists and the sensitivities keying
        ``lesions_per_cancer`` become strings such as ``"0.80"``.

        Returns
        -------
        dict
        """
        out: dict[str, Any] = {
            "n": self.n,
            "n_malignant": self.n_malignant,
            "n_patients": self.n_patients,
            "min_tpr": self.min_tpr,
            "n_boot": self.n_boot,
            "seed": self.seed,
            "n_boot_used": self.n_boot_used,
            "pauc": self.pauc,
            "pauc_ci": self.pauc_ci,
            "auc": self.auc,
            "auc_ci": self.auc_ci,
            "top15_sensitivity": self.top15_sensitivity,
            "top15_sensitivity_ci": self.top15_sensitivity_ci,
            "lesions_per_cancer": {
                f"{level:.2f}": value for level, value in self.lesions_per_cancer.items()
            },
            "operating_points": self.operating_points,
            "calibration": self.calibration,
            "subgroups": self.subgroups,
            "weakest_subgroup": self.weakest_subgroup,
        }
        result: dict[str, Any] = _plain(out)
        return result

    def to_html(self) -> str:
        """A self-contained HTML fragment (a ``<section>`` of tables, no scripts or images).

        Returns
        -------
        str
        """
        parts = ['<section class="lesionboost-evaluation">', "<h2>Evaluation</h2>"]
        parts.append(
            _table(
                ["metric", "value", "95 % CI"],
                [
                    ["lesions", str(self.n), ""],
                    ["malignant lesions", str(self.n_malignant), ""],
                    ["patients", str(self.n_patients), ""],
                    [f"pAUC above {self.min_tpr:.0%} TPR", _fmt(self.pauc), _fmt_ci(self.pauc_ci)],
                    ["AUC", _fmt(self.auc), _fmt_ci(self.auc_ci)],
                    [
                        f"top-{TOP_K} sensitivity",
                        _fmt(self.top15_sensitivity),
                        _fmt_ci(self.top15_sensitivity_ci),
                    ],
                ],
                caption=(
                    f"Patient-level bootstrap: {self.n_boot_used} of {self.n_boot} replicates "
                    f"with both classes (seed {self.seed})."
                ),
            )
        )
        parts.append("<h3>Operating points</h3>")
        parts.append(
            _table(
                [
                    "target sensitivity",
                    "threshold",
                    "sensitivity",
                    "specificity",
                    "referrals / 1,000 lesions",
                    "referrals / patient",
                    "lesions per cancer",
                ],
                [
                    [
                        f"{point['target_sensitivity']:.0%}",
                        _fmt(point["threshold"], 6),
                        _fmt(point["sensitivity"]),
                        _fmt(point["specificity"]),
                        _fmt(point["referrals_per_1000"], 1),
                        _fmt(point["referrals_per_patient"], 2),
                        _fmt(self.lesions_per_cancer.get(point["target_sensitivity"]), 1),
                    ]
                    for point in self.operating_points
                ],
            )
        )
        parts.append("<h3>Calibration</h3>")
        if self.calibration is None:
            parts.append("<p>Scores are not probabilities in [0, 1]; no calibration.</p>")
        else:
            cal = self.calibration
            parts.append(
                _table(
                    [
                        "Brier score",
                        "intercept",
                        "slope",
                        "calibration in the large",
                        "mean score",
                        "event rate",
                    ],
                    [
                        [
                            _fmt(cal["brier"], 5),
                            _fmt(cal["intercept"], 3),
                            _fmt(cal["slope"], 3),
                            _fmt(cal["calibration_in_the_large"], 3),
                            _fmt(cal["mean_score"], 5),
                            _fmt(cal["event_rate"], 5),
                        ]
                    ],
                )
            )
            rel = cal["reliability"]
            parts.append(
                _table(
                    ["bin", "mean predicted", "fraction malignant"],
                    [
                        [str(i + 1), _fmt(p, 5), _fmt(f, 5)]
                        for i, (p, f) in enumerate(
                            zip(rel["mean_predicted"], rel["fraction_malignant"], strict=True)
                        )
                    ],
                    caption="Reliability curve (quantile bins).",
                )
            )
        parts.append("<h3>Subgroups</h3>")
        for name, levels in self.subgroups.items():
            rows = [
                [
                    ("<strong>" + html.escape(str(lv["level"])) + "</strong> (weakest)")
                    if lv["weakest"]
                    else html.escape(str(lv["level"])),
                    str(lv["n"]),
                    str(lv["n_malignant"]),
                    _fmt(lv["pauc"]),
                    _fmt_ci(lv["pauc_ci"]),
                    _fmt(lv["auc"]),
                ]
                for lv in levels
            ]
            parts.append(f"<h4>{html.escape(name)}</h4>")
            parts.append(
                _table(
                    ["level", "lesions", "malignant", "pAUC", "95 % CI", "AUC"], rows, escape=False
                )
            )
        if self.weakest_subgroup is not None:
            weak = self.weakest_subgroup
            parts.append(
                f"<p>Weakest subgroup: {html.escape(weak['subgroup'])} = "
                f"{html.escape(str(weak['level']))} (pAUC {_fmt(weak['pauc'])}, "
                f"{weak['n_malignant']} malignant).</p>"
            )
        parts.append("</section>")
        return "\n".join(parts)


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


def _patient_codes(frame: pl.DataFrame) -> tuple[np.ndarray, int]:
    """Patient code per lesion, numbered by first appearance, and the number of patients."""
    if "patient_id" not in frame.columns:
        raise SchemaError(
            "evaluate: metadata has no 'patient_id' column; the bootstrap resamples patients, "
            "so pass the metadata of the scored lesions with their patient ids."
        )
    ids = frame.get_column("patient_id")
    if ids.null_count():
        rows = np.flatnonzero(ids.is_null().to_numpy())
        raise SchemaError(
            f"evaluate: 'patient_id' is missing at row(s) {rows[:5].tolist()}"
            f"{' ...' if rows.size > 5 else ''}; fill in the patient of every lesion or drop "
            "those rows (with their labels and scores)."
        )
    _, first, inverse = np.unique(
        ids.cast(pl.String).to_numpy(), return_index=True, return_inverse=True
    )
    rank = np.empty(first.size, dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(first.size)
    return rank[inverse.ravel()], int(first.size)


# --------------------------------------------------------------------- bootstrap
def _patient_draws(n_patients: int, n_boot: int, seed: int) -> np.ndarray:
    """How often each patient is drawn in each replicate, shape (n_boot, n_patients)."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n_patients, size=(n_boot, n_patients))
    offsets = picks + (np.arange(n_boot) * n_patients)[:, None]
    flat = np.bincount(offsets.ravel(), minlength=n_boot * n_patients)
    return flat.reshape(n_boot, n_patients).astype(np.int64)


def _area_below(fpr: np.ndarray, tpr: np.ndarray, limit: float) -> np.ndarray:
    """Per row, the area under the piecewise-linear curve (fpr, tpr) from 0 to ``limit``."""
    x0, x1 = fpr[:, :-1], fpr[:, 1:]
    y0, y1 = tpr[:, :-1], tpr[:, 1:]
    right = np.minimum(x1, limit)
    width = np.clip(right - x0, 0.0, None)
    step = x1 - x0
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(step > 0, (right - x0) / step, 0.0)
    y_right = y0 + (y1 - y0) * share
    area: np.ndarray = np.sum(width * (y0 + y_right) / 2.0, axis=1)
    return area


def _bootstrap_roc(
    truth: np.ndarray, score: np.ndarray, codes: np.ndarray, counts: np.ndarray, min_tpr: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """pAUC and AUC of every bootstrap replicate, and which replicates hold both classes.

    A replicate weighs each lesion by how often its patient was drawn. The ROC
    curve is built as :func:`~lesionboost.metrics.pauc_above_tpr` builds it --
    benign as the positive class, negated scores, one vertex per distinct score --
    so a replicate equals the metric on the resampled lesions.
    """
    n_boot = counts.shape[0]
    pauc = np.full(n_boot, np.nan)
    auc = np.full(n_boot, np.nan)
    both = np.zeros(n_boot, dtype=bool)
    if n_boot == 0:
        return pauc, auc, both
    order = np.argsort(score, kind="stable")  # descending negated score
    ordered = score[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(ordered) != 0), ordered.size - 1]
    benign = (truth[order] == 0).astype(np.int64)
    malignant = 1 - benign
    lesion_codes = codes[order]
    batch = max(1, _BATCH_CELLS // max(1, ordered.size))
    for start in range(0, n_boot, batch):
        weights = counts[start : start + batch][:, lesion_codes]
        tp = np.cumsum(weights * benign, axis=1)[:, last_of_tie]
        fp = np.cumsum(weights * malignant, axis=1)[:, last_of_tie]
        total_tp, total_fp = tp[:, -1], fp[:, -1]
        ok = (total_tp > 0) & (total_fp > 0)
        if not ok.any():
            continue
        zeros = np.zeros((int(ok.sum()), 1))
        tpr = np.hstack([zeros, tp[ok] / total_tp[ok, None]])
        fpr = np.hstack([zeros, fp[ok] / total_fp[ok, None]])
        rows = np.arange(start, start + weights.shape[0])[ok]
        pauc[rows] = _area_below(fpr, tpr, 1.0 - min_tpr)
        auc[rows] = _area_below(fpr, tpr, 1.0)
        both[rows] = True
    return pauc, auc, both


def _bootstrap_top_k(found: np.ndarray, malignant: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Top-k sensitivity of every replicate: each drawn copy of a patient counts once."""
    has_cancer = malignant > 0
    shares = found[has_cancer] / malignant[has_cancer]
    drawn = counts[:, has_cancer].astype(np.float64)
    total = drawn.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        value: np.ndarray = np.where(total > 0, (drawn @ shares) / total, np.nan)
    return value


def _percentile_interval(values: np.ndarray) -> Interval | None:
    if values.size == 0:
        return None
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


# ----------------------------------------------------- operating points, calibration
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


# --------------------------------------------------------------------- subgroups
def _age_bands(age: np.ndarray) -> np.ndarray:
    labels = np.full(age.size, UNKNOWN, dtype=object)
    for lower, label in AGE_BANDS:
        labels[np.isfinite(age) & (age >= lower)] = label
    return labels


def _individual_typology_angle(lightness: np.ndarray, b: np.ndarray) -> np.ndarray:
    """ITA in degrees, ``arctan((L - 50) / b) * 180 / pi`` (NaN where undefined)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        angle: np.ndarray = np.degrees(np.arctan((lightness - 50.0) / b))
    return angle


def _skin_tone_bands(ita: np.ndarray) -> np.ndarray:
    labels = np.full(ita.size, UNKNOWN, dtype=object)
    known = np.isfinite(ita)
    for lower, label in reversed(ITA_BANDS):  # narrower (higher) bands overwrite
        labels[known & (ita > lower)] = label
    return labels


def _float_column(frame: pl.DataFrame, name: str) -> np.ndarray:
    column = frame.get_column(name).cast(pl.Float64, strict=False)
    return column.fill_null(float("nan")).to_numpy().astype(np.float64)


def _subgroup_labels(frame: pl.DataFrame) -> dict[str, np.ndarray]:
    """Level of every lesion per subgroup whose columns are in ``frame``."""
    labels: dict[str, np.ndarray] = {}
    for name, columns in _SUBGROUP_COLUMNS.items():
        if not set(columns) <= set(frame.columns):
            continue
        if name == "age_band":
            labels[name] = _age_bands(_float_column(frame, "age_approx"))
        elif name == "skin_tone":
            ita = _individual_typology_angle(
                _float_column(frame, "tbp_lv_Lext"), _float_column(frame, "tbp_lv_Bext")
            )
            labels[name] = _skin_tone_bands(ita)
        else:
            column = frame.get_column(columns[0]).cast(pl.String).fill_null(UNKNOWN)
            labels[name] = np.asarray(column.to_list(), dtype=object)
    return labels


def _level_order(name: str, labels: np.ndarray) -> list[str]:
    present = set(labels.tolist())
    if name == "age_band":
        fixed = [label for _, label in AGE_BANDS] + [UNKNOWN]
    elif name == "skin_tone":
        fixed = [label for _, label in ITA_BANDS] + [UNKNOWN]
    else:
        fixed = sorted(present - {UNKNOWN}) + [UNKNOWN]
    return [level for level in fixed if level in present]


def _subgroup_levels(
    name: str,
    truth: np.ndarray,
    score: np.ndarray,
    codes: np.ndarray,
    counts: np.ndarray,
    labels: np.ndarray,
    min_tpr: float,
) -> list[dict[str, Any]]:
    levels: list[dict[str, Any]] = []
    for level in _level_order(name, labels):
        rows = labels == level
        y, s = truth[rows], score[rows]
        n_malignant = int(y.sum())
        defined = 0 < n_malignant < y.size
        entry: dict[str, Any] = {
            "level": level,
            "n": int(y.size),
            "n_malignant": n_malignant,
            "pauc": pauc_above_tpr(y, s, min_tpr=min_tpr) if defined else None,
            "pauc_ci": None,
            "auc": float(roc_auc_score(y, s)) if defined else None,
            "weakest": False,
        }
        if defined and counts.shape[0]:
            boot, _, both = _bootstrap_roc(y, s, codes[rows], counts, min_tpr)
            entry["pauc_ci"] = _percentile_interval(boot[both])
        levels.append(entry)
    eligible = [
        lv
        for lv in levels
        if lv["pauc"] is not None and lv["n_malignant"] >= MIN_MALIGNANT_FOR_WEAKEST
    ]
    if eligible:
        min(eligible, key=lambda lv: lv["pauc"])["weakest"] = True
    return levels


def _weakest_overall(subgroups: dict[str, list[dict[str, Any]]]) -> dict[str, Any] | None:
    flagged = [(name, lv) for name, levels in subgroups.items() for lv in levels if lv["weakest"]]
    if not flagged:
        return None
    name, level = min(flagged, key=lambda item: item[1]["pauc"])
    return {
        "subgroup": name,
        "level": level["level"],
        "pauc": level["pauc"],
        "n_malignant": level["n_malignant"],
    }


# ---------------------------------------------------------------------- output
def _plain(value: Any) -> Any:
    """Recursively turn numpy scalars, tuples and non-finite floats into JSON-ready Python."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(item) for item in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return number if math.isfinite(number) else None
    return value


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.{digits}f}"


def _fmt_ci(interval: Interval | None) -> str:
    if interval is None:
        return "n/a"
    return f"{interval[0]:.4f} - {interval[1]:.4f}"


def _table(
    header: list[str], rows: list[list[str]], *, caption: str | None = None, escape: bool = True
) -> str:
    def cell(text: str) -> str:
        return html.escape(text) if escape else text

    out = ["<table>"]
    if caption:
        out.append(f"<caption>{html.escape(caption)}</caption>")
    out.append(
        "<thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr></thead>"
    )
    out.append("<tbody>")
    out.extend("<tr>" + "".join(f"<td>{cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    out.append("</tbody></table>")
    return "\n".join(out)
