"""The latent malignancy risk of a simulated lesion, its label and the train-only columns.

The risk is computed from observable columns only (plus the image-only draw), so
``tabular_logit`` is a function of what a model can see in the metadata file::

    logit = centre + shared + log(exp(h_mel) + exp(h_kc)) + image_sd * u
    shared = sum_k beta_k t(s_k)         h_mel = m0 + sum_k beta_k t(m_k)
                                         h_kc  =      sum_k beta_k t(c_k)

* ``centre`` -- one intercept per centre (their malignancy rates differ 8-fold);
* ``s_k`` -- terms of every cancer: age, sex, head/neck site, height on the body,
  skin lightness, texture (``stdLExt``) and hue (``Hext``) around the lesion, the
  patient's lesion count (fewer lesions, higher risk per lesion), the "ugly
  duckling" size terms -- within-patient and within patient x site z-scores of
  ``clin_size_long_diam_mm`` -- and the follow-up score (:func:`followup_score`,
  standardised on the real sample's benign rows): on the real sample the lesions
  clinics follow up look like its cancers (the score's malignant-vs-benign AUC is
  0.73), and this term lets the risk fit reproduce that;
* ``m_k`` -- the melanoma hazard: log size, colour variation (``norm_color``),
  border irregularity, hue, and colour variation relative to the patient's lesions;
* ``c_k`` -- the keratinocyte-cancer (BCC, SCC) hazard: a redder hue, a lower
  ``deltaB``, a low nevus confidence, log size, and hue and nevus confidence
  relative to the patient's other lesions (also within the same site);
* ``t(v) = 3 tanh(v / 3)`` of a standardised column or of a within-group z-score
  ``(x - group mean) / (group SD + 1e-5)`` over *all* of the patient's rows (0 in
  groups of one): smooth, bounded, monotone, and exactly what a featurizer computes;
* ``u ~ N(0, 1)`` -- the image-only component, independent of every column and
  drawn only into the pixels (see :mod:`lesionboost.simulate._render`).

Two hazards make the malignant class a mixture, as in the real data: large,
variegated melanomas (40 %) and small, red, non-naevoid BCC/SCC (60 %), which is
why size shifts the malignant mean by more than 1 SD while its AUC stays ~0.65.
All coefficients are >= 0 and fitted by :mod:`lesionboost.simulate._riskfit`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special

from ._tables import followup_design, load_tables, quantile_lookup

__all__ = [
    "ABSOLUTE_TERMS",
    "RELATIVE_TERMS",
    "RiskModel",
    "risk_features",
    "within_group_z",
]

# Absolute terms: name -> (column, centre, scale, component); term = (value - centre) /
# scale, so a negative scale means "lower is riskier"; log_* columns are logged first.
# Centres and scales are benign means and SDs of the real sample.
ABSOLUTE_TERMS: dict[str, tuple[str, float, float, str]] = {
    "age": ("age_approx", 58.0, 13.6, "shared"),
    "male": ("male", 0.5, 1.0, "shared"),
    "head_neck": ("head_neck", 0.0, 1.0, "shared"),
    "upper_body": ("tbp_lv_y", 1055.0, 409.0, "shared"),
    "fair_skin": ("tbp_lv_Lext", 51.0, 12.3, "shared"),
    "skin_texture": ("log_tbp_lv_stdLExt", 0.762, 0.252, "shared"),
    "skin_hue": ("tbp_lv_Hext", 61.2, -5.59, "shared"),
    "few_lesions": ("log_n_lesions", 5.49, -1.0, "shared"),
    "followup": ("followup_z", 0.0, 1.0, "shared"),
    "mel_size": ("log_clin_size_long_diam_mm", 1.30, 0.342, "melanoma"),
    "mel_colour": ("tbp_lv_norm_color", 3.06, 2.03, "melanoma"),
    "mel_border": ("tbp_lv_norm_border", 3.45, 1.69, "melanoma"),
    "mel_hue": ("tbp_lv_H", 54.9, -5.49, "melanoma"),
    "kc_hue": ("tbp_lv_H", 54.9, -5.49, "keratinocyte"),
    "kc_delta_b": ("tbp_lv_deltaB", 1.40, -2.20, "keratinocyte"),
    "kc_low_nevus": ("tbp_lv_nevi_confidence", 38.4, -41.4, "keratinocyte"),
    "kc_size": ("log_clin_size_long_diam_mm", 1.30, 0.342, "keratinocyte"),
}
# Patient-relative terms: name -> (column, grouping, sign, component).
RELATIVE_TERMS: dict[str, tuple[str, str, float, str]] = {
    "patient_size": ("clin_size_long_diam_mm", "patient", 1.0, "shared"),
    "site_size": ("clin_size_long_diam_mm", "patient_site", 1.0, "shared"),
    "patient_colour": ("tbp_lv_norm_color", "patient", 1.0, "melanoma"),
    "patient_border": ("tbp_lv_norm_border", "patient", 1.0, "melanoma"),
    "patient_nevus": ("tbp_lv_nevi_confidence", "patient", -1.0, "keratinocyte"),
    "patient_delta_b": ("tbp_lv_deltaB", "patient", -1.0, "keratinocyte"),
    "patient_hue": ("tbp_lv_H", "patient", -1.0, "keratinocyte"),
    "site_hue": ("tbp_lv_H", "patient_site", -1.0, "keratinocyte"),
}
TERM_NAMES: tuple[str, ...] = (*ABSOLUTE_TERMS, *RELATIVE_TERMS)
COMPONENT_OF: dict[str, str] = {
    name: spec[-1] for name, spec in (*ABSOLUTE_TERMS.items(), *RELATIVE_TERMS.items())
}
_SOFT_CLIP = 3.0
_BENIGN_FOLLOWED_RATE = 0.054  # benign rows with a lesion_id in the public Kaggle training file
_HEAD_NECK = 2  # index of "head/neck" in _tables.SITES
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


def risk_features(
    lesion: dict[str, np.ndarray],
    patient: dict[str, np.ndarray],
    followup: np.ndarray,
    tables: dict[str, Any] | None = None,
) -> np.ndarray:
    """The soft-clipped risk terms of every lesion, columns in :data:`TERM_NAMES` order.

    ``followup`` is :func:`followup_score` of the same lesions.
    """
    model = (load_tables() if tables is None else tables)["followup"]
    owner = lesion["patient"]
    source = dict(lesion)
    source["followup_z"] = (followup - model["benign_mean"]) / model["benign_sd"]
    source["age_approx"] = np.nan_to_num(patient["age"][owner], nan=58.0)
    source["male"] = patient["male"][owner]
    source["head_neck"] = (lesion["site"] == _HEAD_NECK).astype(float)
    source["log_clin_size_long_diam_mm"] = np.log(lesion["clin_size_long_diam_mm"])
    source["log_tbp_lv_stdLExt"] = np.log(lesion["tbp_lv_stdLExt"])
    source["log_n_lesions"] = np.log(np.bincount(owner)[owner])
    groups = {"patient": owner, "patient_site": owner * 8 + lesion["site"]}
    columns = [(source[col] - centre) / scale for col, centre, scale, _ in ABSOLUTE_TERMS.values()]
    columns += [
        sign * within_group_z(lesion[col], groups[grouping])
        for col, grouping, sign, _ in RELATIVE_TERMS.values()
    ]
    return _SOFT_CLIP * np.tanh(np.column_stack(columns) / _SOFT_CLIP)


def _masks() -> dict[str, np.ndarray]:
    return {
        part: np.array([COMPONENT_OF[name] == part for name in TERM_NAMES], dtype=float)
        for part in ("shared", "melanoma", "keratinocyte")
    }


@dataclass(frozen=True)
class RiskModel:
    """Fitted coefficients of the latent risk (see the module docstring)."""

    coef: np.ndarray  # one per TERM_NAMES entry, all >= 0
    centre: np.ndarray  # one intercept per centre (CENTRES order)
    melanoma_offset: float  # intercept of the melanoma hazard (keratinocyte hazard: 0)
    image_sd: float  # SD of the image-only term of the logit
    scc_offset: float  # splits keratinocyte cancers into BCC and SCC

    @classmethod
    def from_tables(cls, tables: dict[str, Any] | None = None) -> RiskModel:
        risk = (load_tables() if tables is None else tables)["risk"]
        return cls(
            coef=np.array([risk["coef"].get(name, 0.0) for name in TERM_NAMES]),
            centre=np.asarray(risk["centre"], dtype=float),
            melanoma_offset=float(risk["melanoma_offset"]),
            image_sd=float(risk["image_sd"]),
            scc_offset=float(risk["scc_offset"]),
        )

    def hazards(
        self, features: np.ndarray, centre_of_row: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Shared part, melanoma and keratinocyte-cancer log-hazards of every row."""
        masks = _masks()
        shared = features @ (self.coef * masks["shared"]) + self.centre[centre_of_row]
        melanoma = features @ (self.coef * masks["melanoma"]) + self.melanoma_offset
        keratinocyte = features @ (self.coef * masks["keratinocyte"])
        return shared, melanoma, keratinocyte

    def tabular_logit(self, features: np.ndarray, centre_of_row: np.ndarray) -> np.ndarray:
        """``shared + log(exp(melanoma) + exp(keratinocyte))``: everything but the image."""
        shared, melanoma, keratinocyte = self.hazards(features, centre_of_row)
        return shared + np.logaddexp(melanoma, keratinocyte)


def subtype_probabilities(
    features: np.ndarray, centre_of_row: np.ndarray, risk: RiskModel
) -> np.ndarray:
    """P(BCC), P(melanoma), P(SCC) of a malignant lesion given its columns.

    Melanoma vs keratinocyte cancer follows the two hazards; among keratinocyte
    cancers, SCC is likelier in older patients and on the head and neck.
    """
    _, melanoma, keratinocyte = risk.hazards(features, centre_of_row)
    p_mel = special.expit(melanoma - keratinocyte)
    col = {name: k for k, name in enumerate(TERM_NAMES)}
    p_scc = special.expit(
        risk.scc_offset + 0.6 * features[:, col["age"]] + 0.6 * features[:, col["head_neck"]]
    )
    return np.column_stack([(1 - p_mel) * (1 - p_scc), p_mel, (1 - p_mel) * p_scc])


def followup_score(
    normal_scores: np.ndarray,
    columns: dict[str, np.ndarray],
    covariates: np.ndarray,
    tables: dict[str, Any] | None = None,
) -> np.ndarray:
    """Log-odds (up to a constant) that a clinic follows a benign lesion up.

    The logistic model fitted on the real sample by
    :func:`lesionboost.simulate._calibrate._followup_model`, applied to the
    simulated lesions. ``lesion_id`` is drawn from it, not from the malignancy
    risk; the risk has it as one term (``followup``), fitted so that the score
    ranks malignant above benign lesions as it does on the real sample.
    """
    model = (load_tables() if tables is None else tables)["followup"]
    design = followup_design(normal_scores, columns, covariates)
    return design @ np.asarray(model["coef"], dtype=float)


def leak_columns(
    target: np.ndarray,
    followup: np.ndarray,
    features: np.ndarray,
    centre_of_row: np.ndarray,
    risk: RiskModel,
    rng: np.random.Generator,
    tables: dict[str, Any] | None = None,
) -> dict[str, list[Any] | np.ndarray]:
    """Train-only columns drawn after the label, the way the real ones behave.

    ``lesion_id`` on every malignant lesion and on ~5.4 % of benign ones, drawn
    from ``followup`` (:func:`followup_score`); ``iddx_*`` from the diagnosis vocabulary of the
    real sample (BCC / melanoma / SCC mix for malignant lesions; a few biopsied
    benign and indeterminate lesions); ``mel_*`` for invasive melanomas only;
    ``tbp_lv_dnn_lesion_confidence`` from the benign or malignant distribution.
    """
    tables = load_tables() if tables is None else tables
    leak = tables["leak"]
    n = len(target)
    malignant = target == 1
    # lesion_id: solve the follow-up model's intercept for ~5.4 % of benign lesions.
    offset = _solve_offset(followup[~malignant], _BENIGN_FOLLOWED_RATE)
    followed = malignant | (rng.random(n) < special.expit(offset + followup))
    iddx_full = np.full(n, "Benign", dtype=object)
    vocabulary = [(t, name, count) for t, name, count in leak["iddx_full"]]
    benign_paths = [(name, count) for t, name, count in vocabulary if t == 0 and name != "Benign"]
    biopsied = followed & ~malignant & (rng.random(n) < 0.031)
    if biopsied.any() and benign_paths:
        names, counts = zip(*benign_paths, strict=True)
        weights = np.asarray(counts, dtype=float)
        iddx_full[biopsied] = rng.choice(
            np.array(names, dtype=object), biopsied.sum(), p=weights / weights.sum()
        )
    thickness = np.full(n, np.nan)
    mitotic = np.full(n, None, dtype=object)
    rows = np.flatnonzero(malignant)
    if len(rows):
        probs = subtype_probabilities(features[rows], centre_of_row[rows], risk)
        subtype = (rng.random(len(rows))[:, None] > np.cumsum(probs, axis=1)).sum(axis=1)
        for k, code in enumerate(("BCC", "MEL", "SCC")):
            chosen = rows[subtype == k]
            paths = [
                (name, count) for t, name, count in vocabulary if t == 1 and _IDDX2[code] in name
            ]
            names, counts = zip(*paths, strict=True)
            weights = np.asarray(counts, dtype=float)
            iddx_full[chosen] = rng.choice(
                np.array(names, dtype=object), len(chosen), p=weights / weights.sum()
            )
        invasive = np.array(["Melanoma Invasive" in str(v) for v in iddx_full]) & malignant
        thickness[invasive] = np.round(
            quantile_lookup(leak["mel_thick_mm"], rng.random(invasive.sum())), 1
        )
        levels, level_counts = zip(*leak["mel_mitotic_index"], strict=True)
        has_index = invasive & (rng.random(n) < 53 / 63)  # share in the public Kaggle training file
        level_p = np.asarray(level_counts, dtype=float)
        mitotic[has_index] = rng.choice(
            np.array(levels, dtype=object), has_index.sum(), p=level_p / level_p.sum()
        )
    parts = [str(v).split("::") for v in iddx_full]
    iddx = {f"iddx_{k}": [p[k - 1] if len(p) >= k else None for p in parts] for k in range(1, 6)}
    dnn = np.where(
        malignant,
        quantile_lookup(leak["dnn_malignant"], rng.random(n)),
        quantile_lookup(leak["dnn_benign"], rng.random(n)),
    )
    return {
        "followed_up": followed,
        "iddx_full": iddx_full.tolist(),
        **iddx,
        "mel_mitotic_index": mitotic.tolist(),
        "mel_thick_mm": thickness,
        "tbp_lv_dnn_lesion_confidence": np.clip(dnn, 0.0, 100.0),
    }


def _solve_offset(score: np.ndarray, rate: float) -> float:
    """Offset ``c`` with ``mean(expit(c + score)) == rate`` (bisection)."""
    low, high = -20.0, 20.0
    for _ in range(60):
        mid = (low + high) / 2
        if special.expit(mid + score).mean() > rate:
            high = mid
        else:
            low = mid
    return (low + high) / 2
