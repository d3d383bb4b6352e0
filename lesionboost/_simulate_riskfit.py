"""Fit the risk coefficients of the simulator by exponential tilting.

Labels are drawn as ``target ~ Bernoulli(expit(logit))`` from columns drawn
beforehand, so the malignant class is the benign population re-weighted by
``w = expit(logit)``. Every statistic of the malignant class is therefore a
weighted statistic of one simulated population, and the coefficients can be fitted
without drawing labels at all: prevalence and rates by centre, site and sex, the
class-conditional mean shifts of FACTS.md section 2.5, the univariate AUCs of the
real sample, and the expected pAUC of the full and tabular oracles.

Run through ``python -m lesionboost._simulate_calibration --fit-risk``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from scipy import optimize, special

from ._simulate_calibration import CENTRES, load_tables
from ._simulate_population import draw_population
from ._simulate_risk import RELATIVE_TERMS, TERM_NAMES, risk_features, subtype_scores
from .schema import NUMERIC_COLUMNS

__all__ = ["fit_risk", "tilt_summary", "weighted_pauc"]

logger = logging.getLogger(__name__)

#: Malignant - benign mean in benign SD units on the full file (FACTS.md section 2.5).
TARGET_SHIFTS: dict[str, float] = {
    "tbp_lv_areaMM2": 1.44, "tbp_lv_H": -1.43, "tbp_lv_perimeterMM": 1.16,
    "tbp_lv_minorAxisMM": 1.14, "tbp_lv_deltaB": -1.12, "clin_size_long_diam_mm": 1.04,
    "tbp_lv_Hext": -1.04, "tbp_lv_B": -0.84, "tbp_lv_stdLExt": 0.83,
    "tbp_lv_radial_color_std_max": 0.81, "tbp_lv_color_std_mean": 0.78, "tbp_lv_Aext": 0.74,
    "tbp_lv_norm_color": 0.71, "tbp_lv_A": 0.63, "tbp_lv_deltaLBnorm": 0.48,
    "tbp_lv_Bext": -0.44, "tbp_lv_nevi_confidence": -0.43, "tbp_lv_stdL": 0.40,
    "tbp_lv_deltaLB": 0.39, "tbp_lv_area_perim_ratio": 0.31, "tbp_lv_norm_border": 0.22,
    "tbp_lv_eccentricity": -0.17, "age_approx": 0.25,
}  # fmt: skip
#: Difficulty targets: expected pAUC (80 % TPR) of the full and the tabular oracle.
TARGET_PAUC = {"full": 0.190, "tabular": 0.177}
_HEAD_NECK_RATIO = (78 / 12_046) / ((393 - 78) / (401_059 - 12_046 - 5_756))
_MALE_FEMALE_RATIO = (274 / 265_546) / (109 / 123_996)
_SUBTYPE_MIX = np.array([163, 157, 73]) / 393  # BCC, melanoma, SCC


def weighted_pauc(score: np.ndarray, weight: np.ndarray, min_tpr: float = 0.8) -> float:
    """Expected pAUC above ``min_tpr`` when row i is malignant with probability ``weight[i]``."""
    order = np.argsort(-score, kind="stable")
    pos = np.cumsum(weight[order])
    neg = np.cumsum(1.0 - weight[order])
    tpr = np.concatenate([[0.0], pos / pos[-1]])
    fpr = np.concatenate([[0.0], neg / neg[-1]])
    start = int(np.searchsorted(tpr, min_tpr))
    fpr_at = np.interp(min_tpr, tpr[start - 1 : start + 1], fpr[start - 1 : start + 1])
    t = np.concatenate([[min_tpr], tpr[start:]])
    f = np.concatenate([[fpr_at], fpr[start:]])
    return float(np.sum((t[1:] - t[:-1]) * (1 - (f[1:] + f[:-1]) / 2)))


class _Cohort:
    """One simulated population with everything the tilt statistics need, precomputed."""

    def __init__(self, n_patients: int, seed: int, tables: dict[str, Any]) -> None:
        rng = np.random.default_rng(seed)
        pop = draw_population(n_patients, rng, tables)
        lesion, patient = pop.lesion, pop.patient
        self.features = risk_features(lesion, patient)
        self.centre = patient["centre"][lesion["patient"]]
        self.head_neck = lesion["site"] == 2
        self.known_site = lesion["site"] != 5
        male = patient["male"][lesion["patient"]]
        self.male, self.female = male == 1.0, male == 0.0
        self.image_u = rng.standard_normal(pop.n_lesions)
        self.patient = lesion["patient"]
        self.n_patients = n_patients
        values = dict(lesion)
        values["age_approx"] = patient["age"][lesion["patient"]]
        self.columns = list(NUMERIC_COLUMNS)
        # For AUCs: the (mid-rank) benign CDF of each column at each row; for shifts:
        # the benign mean and SD. The benign class is the population itself (w << 1).
        self.cdf = np.empty((pop.n_lesions, len(self.columns)))
        self.value = np.empty_like(self.cdf)
        for j, name in enumerate(self.columns):
            x = np.asarray(values[name], dtype=float)
            keep = ~np.isnan(x)
            filled = np.where(keep, x, np.nanmean(x))
            ranks = np.empty(len(x))
            from scipy.stats import rankdata

            ranks[keep] = (rankdata(x[keep]) - 0.5) / keep.sum()
            ranks[~keep] = 0.5
            self.cdf[:, j] = ranks
            self.value[:, j] = (filled - x[keep].mean()) / x[keep].std()


def tilt_summary(cohort: _Cohort, coef: np.ndarray, centre: np.ndarray, image_sd: float) -> dict[str, Any]:
    """Expected malignant-class statistics of one cohort under the given coefficients."""
    tabular = cohort.features @ coef + centre[cohort.centre]
    full = tabular + image_sd * cohort.image_u
    w = special.expit(full)
    total = w.sum()
    rates = np.array([w[cohort.centre == k].mean() for k in range(len(CENTRES))])
    other = cohort.known_site & ~cohort.head_neck
    lam = np.bincount(cohort.patient, weights=w, minlength=cohort.n_patients)
    return {
        "prevalence": total / len(w),
        "centre_rates": rates,
        "head_neck_ratio": w[cohort.head_neck].mean() / w[other].mean(),
        "male_female_ratio": w[cohort.male].mean() / w[cohort.female].mean(),
        "auc": dict(zip(cohort.columns, w @ cohort.cdf / total, strict=True)),
        "shift": dict(zip(cohort.columns, w @ cohort.value / total, strict=True)),
        "pauc_full": weighted_pauc(full, w),
        "pauc_tabular": weighted_pauc(tabular, w),
        "patients_with_positive": float(np.mean(1 - np.exp(-lam))),
        "positives_per_patient": lam,
        "weights": w,
    }


def _residuals(theta: np.ndarray, cohorts: list[_Cohort], real_auc: dict[str, float]) -> np.ndarray:
    m = len(TERM_NAMES)
    coef, centre, image_sd = theta[:m], theta[m : m + len(CENTRES)], theta[-1]
    target_rates = np.array([pos / rows for _, rows, pos, *_ in CENTRES])
    out = []
    for cohort in cohorts:
        s = tilt_summary(cohort, coef, centre, image_sd)
        out += list(np.log(s["centre_rates"] / target_rates) / 0.03)
        out.append(np.log(s["head_neck_ratio"] / _HEAD_NECK_RATIO) / 0.05)
        out.append(np.log(s["male_female_ratio"] / _MALE_FEMALE_RATIO) / 0.1)
        out += [(s["shift"][c] - t) / 0.08 for c, t in TARGET_SHIFTS.items()]
        out += [(s["auc"][c] - a) / 0.015 for c, a in real_auc.items() if abs(a - 0.5) > 0.04]
        out.append((s["pauc_full"] - TARGET_PAUC["full"]) / 0.0015)
        out.append((s["pauc_tabular"] - TARGET_PAUC["tabular"]) / 0.0015)
    out += list(coef / 3.0)  # weak ridge: no term larger than it must be
    return np.asarray(out)


def fit_risk(
    n_patients: int = 1042, seeds: tuple[int, ...] = (101, 202), tables: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Fit the risk coefficients; returns the JSON-ready ``risk`` entry of the tables."""
    tables = load_tables() if tables is None else tables
    cohorts = [_Cohort(n_patients, seed, tables) for seed in seeds]
    start = np.zeros(len(TERM_NAMES) + len(CENTRES) + 1)
    start[len(TERM_NAMES) : -1] = -7.5
    start[-1] = 1.0
    fit = optimize.least_squares(
        _residuals, start, args=(cohorts, tables["real_auc"]), x_scale=1.0, diff_step=1e-3, max_nfev=400
    )
    m = len(TERM_NAMES)
    coef, centre, image_sd = fit.x[:m], fit.x[m : m + len(CENTRES)], float(fit.x[-1])
    summary = tilt_summary(cohorts[0], coef, centre, image_sd)
    intercepts = _subtype_intercepts(cohorts[0], summary["weights"])
    logger.info("risk fit: cost %.2f, %s", fit.cost, {k: round(float(v), 3) for k, v in zip(TERM_NAMES, coef, strict=True)})
    return {
        "coef": {name: round(float(v), 5) for name, v in zip(TERM_NAMES, coef, strict=True)},
        "centre": [round(float(v), 5) for v in centre],
        "image_sd": round(image_sd, 5),
        "subtype_intercepts": [round(float(v), 5) for v in intercepts],
        "relative_terms": list(RELATIVE_TERMS),
    }


def _subtype_intercepts(cohort: _Cohort, weights: np.ndarray) -> np.ndarray:
    """Intercepts that make the expected BCC / melanoma / SCC mix match the real one."""
    scores = subtype_scores(cohort.features)

    def gap(b: np.ndarray) -> np.ndarray:
        probs = special.softmax(scores + np.concatenate([[0.0], b]), axis=1)
        mix = weights @ probs / weights.sum()
        return np.log(mix[1:] / _SUBTYPE_MIX[1:]) - np.log(mix[0] / _SUBTYPE_MIX[0])

    solved = optimize.fsolve(gap, np.zeros(2))
    return np.concatenate([[0.0], solved])
