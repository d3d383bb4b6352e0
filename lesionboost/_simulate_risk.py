"""The latent malignancy risk of a simulated lesion, its label and the train-only columns.

The risk is computed from observable columns only (plus the image-only draw), so
``tabular_logit`` is a function of what a model can see in the metadata file:

``logit = centre + sum_k beta_k * t(a_k) + sum_m gamma_m * t(r_m) + image_sd * u``

* ``a_k`` -- absolute terms: standardised age, sex, head/neck site, log lesion size,
  hue (lower = redder), deltaB, colour variation (norm_color), nevus confidence,
  hue and texture of the surrounding skin, border irregularity;
* ``r_m`` -- patient-relative ("ugly duckling") terms: within-patient z-scores
  ``(x - patient mean) / (patient SD + 1e-5)`` (sample SD over all of the
  patient's rows, 0 for a single lesion) of size, hue, colour variation and nevus
  confidence, and within patient x ``anatom_site_general`` z-scores of size and hue;
* ``t(v) = 3 tanh(v / 3)`` keeps every term smooth, monotone and bounded;
* ``u ~ N(0, 1)`` is the image-only component: drawn independently of every column
  and rendered into the pixels only (see :mod:`lesionboost._simulate_render`).

The coefficients are fitted by :mod:`lesionboost._simulate_riskfit` and stored with
the calibration tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special

from ._simulate_calibration import load_tables, quantile_lookup

__all__ = [
    "ABSOLUTE_TERMS",
    "RELATIVE_TERMS",
    "RiskModel",
    "risk_features",
    "within_group_z",
]

# name -> (column, centre, scale): term = (value - centre) / scale; a negative scale
# means "lower is riskier". log columns are logged first. Centres and scales are the
# benign means and SDs of the real sample (FACTS.md section 2.5).
ABSOLUTE_TERMS: dict[str, tuple[str, float, float]] = {
    "age": ("age_approx", 58.0, 13.6),
    "male": ("male", 0.5, 1.0),
    "head_neck": ("head_neck", 0.0, 1.0),
    "size": ("log_clin_size_long_diam_mm", 1.30, 0.342),
    "hue": ("tbp_lv_H", 54.9, -5.49),
    "delta_b": ("tbp_lv_deltaB", 1.40, -2.20),
    "colour_variation": ("tbp_lv_norm_color", 3.06, 2.03),
    "nevus": ("tbp_lv_nevi_confidence", 38.4, -41.4),
    "skin_hue": ("tbp_lv_Hext", 61.2, -5.59),
    "skin_texture": ("log_tbp_lv_stdLExt", 0.762, 0.252),
    "border": ("tbp_lv_norm_border", 3.45, 1.69),
}
# name -> (column, grouping, sign)
RELATIVE_TERMS: dict[str, tuple[str, str, float]] = {
    "patient_size": ("clin_size_long_diam_mm", "patient", 1.0),
    "patient_hue": ("tbp_lv_H", "patient", -1.0),
    "patient_colour": ("tbp_lv_norm_color", "patient", 1.0),
    "patient_nevus": ("tbp_lv_nevi_confidence", "patient", -1.0),
    "site_size": ("clin_size_long_diam_mm", "patient_site", 1.0),
    "site_hue": ("tbp_lv_H", "patient_site", -1.0),
}
TERM_NAMES: tuple[str, ...] = (*ABSOLUTE_TERMS, *RELATIVE_TERMS)
_SOFT_CLIP = 3.0
_HEAD_NECK = 2  # index of "head/neck" in _simulate_calibration.SITES
_SUBTYPES = ("BCC", "MEL", "SCC")
_IDDX2 = {
    "BCC": "Malignant adnexal epithelial proliferations - Follicular",
    "MEL": "Malignant melanocytic proliferations (Melanoma)",
    "SCC": "Malignant epidermal proliferations",
}


def within_group_z(values: np.ndarray, group: np.ndarray) -> np.ndarray:
    """``(x - group mean) / (group sample SD + 1e-5)``; 0 in groups of one row.

    This is exactly the "patient norm" feature of the public ISIC 2024 notebooks,
    so a featurizer that computes it sees the same quantity the risk uses.
    """
    _, inverse, counts = np.unique(group, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=values)
    means = sums / counts
    centred = values - means[inverse]
    squares = np.bincount(inverse, weights=centred**2)
    sd = np.sqrt(squares / np.maximum(counts - 1, 1))
    z = centred / (sd[inverse] + 1e-5)
    return np.where(counts[inverse] > 1, z, 0.0)


def risk_features(lesion: dict[str, np.ndarray], patient: dict[str, np.ndarray]) -> np.ndarray:
    """The soft-clipped risk terms of every lesion, columns in :data:`TERM_NAMES` order."""
    owner = lesion["patient"]
    source = dict(lesion)
    source["age_approx"] = np.nan_to_num(patient["age"][owner], nan=58.0)
    source["male"] = patient["male"][owner]
    source["head_neck"] = (lesion["site"] == _HEAD_NECK).astype(float)
    source["log_clin_size_long_diam_mm"] = np.log(lesion["clin_size_long_diam_mm"])
    source["log_tbp_lv_stdLExt"] = np.log(lesion["tbp_lv_stdLExt"])
    groups = {"patient": owner, "patient_site": owner * 8 + lesion["site"]}
    columns = [(source[col] - centre) / scale for col, centre, scale in ABSOLUTE_TERMS.values()]
    columns += [
        sign * within_group_z(lesion[col], groups[grouping])
        for col, grouping, sign in RELATIVE_TERMS.values()
    ]
    return _SOFT_CLIP * np.tanh(np.column_stack(columns) / _SOFT_CLIP)


@dataclass(frozen=True)
class RiskModel:
    """Fitted coefficients of the latent risk (see the module docstring)."""

    coef: np.ndarray  # one per TERM_NAMES entry
    centre: np.ndarray  # one intercept per centre (CENTRES order)
    image_sd: float
    subtype_intercepts: np.ndarray  # BCC, MEL, SCC

    @classmethod
    def from_tables(cls, tables: dict[str, Any] | None = None) -> RiskModel:
        risk = (load_tables() if tables is None else tables)["risk"]
        return cls(
            coef=np.array([risk["coef"][name] for name in TERM_NAMES]),
            centre=np.asarray(risk["centre"], dtype=float),
            image_sd=float(risk["image_sd"]),
            subtype_intercepts=np.asarray(risk["subtype_intercepts"], dtype=float),
        )

    def tabular_logit(self, features: np.ndarray, centre_of_row: np.ndarray) -> np.ndarray:
        return features @ self.coef + self.centre[centre_of_row]


def subtype_scores(features: np.ndarray) -> np.ndarray:
    """Un-centred multinomial scores for BCC / melanoma / SCC given a malignant lesion.

    Melanomas carry higher nevus confidence and size; keratinocyte cancers sit on the
    head and neck and in older patients (the pattern of the real malignant rows).
    """
    col = {name: k for k, name in enumerate(TERM_NAMES)}
    nevus, size = -features[:, col["nevus"]], features[:, col["size"]]
    head, age = features[:, col["head_neck"]], features[:, col["age"]]
    return np.column_stack(
        [0.4 * head, 1.2 * nevus + 0.5 * size - 0.8 * head, 0.5 * head + 0.5 * age]
    )


def draw_subtypes(
    features: np.ndarray, intercepts: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Index into ("BCC", "MEL", "SCC") for each (malignant) row of ``features``."""
    scores = subtype_scores(features) + intercepts
    probs = special.softmax(scores, axis=1)
    return (rng.random(len(features))[:, None] > np.cumsum(probs, axis=1)).sum(axis=1)


def leak_columns(
    target: np.ndarray,
    tabular: np.ndarray,
    features: np.ndarray,
    risk: RiskModel,
    rng: np.random.Generator,
    tables: dict[str, Any] | None = None,
) -> dict[str, list[Any] | np.ndarray]:
    """Train-only columns drawn after the label, the way the real ones behave.

    ``lesion_id`` on every malignant lesion and on ~5.4 % of benign ones (more often
    on suspicious-looking lesions); ``iddx_*`` from the diagnosis vocabulary of the
    real sample (BCC / melanoma / SCC mix for malignant lesions; a few biopsied
    benign and indeterminate lesions); ``mel_*`` for invasive melanomas only;
    ``tbp_lv_dnn_lesion_confidence`` from the benign or malignant distribution.
    """
    tables = load_tables() if tables is None else tables
    leak = tables["leak"]
    n = len(target)
    malignant = target == 1
    # lesion_id: tracked lesions are the suspicious ones; solve the offset for ~5.4 %.
    spread = (tabular - tabular.mean()) / (tabular.std() + 1e-12)
    offset = _solve_offset(0.6 * spread, 0.054)
    tracked = malignant | (rng.random(n) < special.expit(offset + 0.6 * spread))
    iddx_full = np.full(n, "Benign", dtype=object)
    vocabulary = [(t, name, count) for t, name, count in leak["iddx_full"]]
    benign_paths = [(name, count) for t, name, count in vocabulary if t == 0 and name != "Benign"]
    biopsied = tracked & ~malignant & (rng.random(n) < 0.031)
    if biopsied.any() and benign_paths:
        names, counts = zip(*benign_paths, strict=True)
        weights = np.asarray(counts, dtype=float)
        iddx_full[biopsied] = rng.choice(np.array(names, dtype=object), biopsied.sum(), p=weights / weights.sum())
    thickness = np.full(n, np.nan)
    mitotic = np.full(n, None, dtype=object)
    rows = np.flatnonzero(malignant)
    if len(rows):
        subtype = draw_subtypes(features[rows], risk.subtype_intercepts, rng)
        for k, code in enumerate(_SUBTYPES):
            chosen = rows[subtype == k]
            paths = [(name, count) for t, name, count in vocabulary if t == 1 and _IDDX2[code] in name]
            names, counts = zip(*paths, strict=True)
            weights = np.asarray(counts, dtype=float)
            iddx_full[chosen] = rng.choice(np.array(names, dtype=object), len(chosen), p=weights / weights.sum())
        invasive = np.array(["Melanoma Invasive" in str(v) for v in iddx_full]) & malignant
        thickness[invasive] = np.round(
            quantile_lookup(leak["mel_thick_mm"], rng.random(invasive.sum())), 1
        )
        levels, level_counts = zip(*leak["mel_mitotic_index"], strict=True)
        has_index = invasive & (rng.random(n) < 53 / 63)  # FACTS.md section 2.2
        level_p = np.asarray(level_counts, dtype=float)
        mitotic[has_index] = rng.choice(np.array(levels, dtype=object), has_index.sum(), p=level_p / level_p.sum())
    parts = [str(v).split("::") for v in iddx_full]
    iddx = {f"iddx_{k}": [p[k - 1] if len(p) >= k else None for p in parts] for k in range(1, 6)}
    dnn = np.where(
        malignant,
        quantile_lookup(leak["dnn_malignant"], rng.random(n)),
        quantile_lookup(leak["dnn_benign"], rng.random(n)),
    )
    return {
        "tracked": tracked,
        "iddx_full": iddx_full.tolist(),
        **iddx,
        "mel_mitotic_index": mitotic.tolist(),
        "mel_thick_mm": thickness,
        "tbp_lv_dnn_lesion_confidence": np.clip(dnn, 0.0, 100.0),
    }


def _solve_offset(score: np.ndarray, rate: float) -> float:
    """Offset ``c`` with ``mean(expit(c + score)) == rate`` (bisection; score is small)."""
    low, high = -20.0, 20.0
    for _ in range(60):
        mid = (low + high) / 2
        if special.expit(mid + score).mean() > rate:
            high = mid
        else:
            low = mid
    return (low + high) / 2
