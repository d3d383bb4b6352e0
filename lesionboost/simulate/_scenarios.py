"""Alternative malignancy mechanisms ("scenarios") over the same benign population.

Every scenario draws the same patients, lesions and columns as the default
simulator (:mod:`lesionboost.simulate._population`); only the risk that turns
columns into labels differs. Each non-default scenario has the form::

    tabular_logit = intercept + strength * score(lesion, patient) + followup
    logit         = tabular_logit + image_sd * u

where ``followup`` is the default risk's follow-up term (its coefficient times the
soft-clipped, standardised follow-up score, so that cancers still look like the
lesions clinics follow up and ``lesion_id`` keeps its meaning), ``image_sd * u`` the
default's image-only component (the same draw, so crops render the same way), and
``score`` the scenario's own mechanism:

* ``location_duckling`` -- ugly duckling within the patient's lesions at the same
  fine body location (``tbp_lv_location``): the sum of soft-clipped within-group
  z-scores of size, contrast, colour variation, border and (lower) hue;
* ``percentile`` -- heavy-tailed within-patient percentile ranks:
  ``sum_k r_k ** 20`` with ``r = (average rank - 1) / (n - 1)`` (0.5 for a patient
  with one lesion) of size, contrast, radial colour spread and (low) nevus
  confidence; a lesion counts when it is the patient's most extreme, hardly at all
  otherwise;
* ``multivariate`` -- multivariate outlierness: the Mahalanobis distance of the
  lesion from the mean of its patient's lesions in the joint space of log size, the
  three colour deltas, colour variation and border, under the patient's covariance
  shrunk towards its diagonal (0 for a patient with one lesion); it is direction-free
  and counts unusual combinations that no single column shows;
* ``absolute`` -- mostly absolute effects: standardised age, sex, head/neck site,
  size, colour variation, border, (low) hue, (low) nevus confidence and (low)
  deltaB, plus a weak within-patient size z-score;
* ``interactions`` -- thresholded interactions of size x colour x site: large and
  variegated lesions on the back or legs, red non-naevoid lesions on sun-exposed
  sites (head/neck, arms), large red lesions anywhere (large: log size > 1 benign
  SD above the benign mean; variegated: colour variation > 0.8 SD above; red: hue
  > 0.8 SD below; non-naevoid: nevus confidence > 0.5 SD below);
* ``mixed`` -- a mixture of the hazards of the five mechanisms above with weights
  ``w`` drawn from the seed (:func:`mixture_weights`)::

      tabular_logit = followup - log(w' R w)
                      + log(sum_j w_j exp(intercept_j + strength_j * score_j))

  so a cancer arises through one of several mechanisms; ``R`` (:data:`_MIXED_EXCESS`)
  corrects the prevalence, which a mixture of hazards would otherwise raise by up
  to 50 %.

The label, the train-only columns (``lesion_id``, ``iddx_*``, ``mel_*``, with the
malignant subtype split by the default risk's melanoma and keratinocyte hazards)
and the crops are drawn from these logits exactly as in the default.

``intercept`` and ``strength`` of each mechanism are constants (:data:`_CALIBRATION`)
chosen once by exponential tilting on a simulated full-size cohort: the expected
prevalence is the real 0.098 % and the expected pAUC (80 % TPR) of
``tabular_logit`` the default's 0.177.
"""

from __future__ import annotations

import numpy as np

from ._population import LOCATIONS
from ._risk import TERM_NAMES, RiskModel, within_group_z

__all__ = [
    "SCENARIOS",
    "MECHANISMS",
    "check_scenario",
    "followup_term",
    "mechanism_score",
    "mechanism_terms",
    "mixture_weights",
    "scenario_tabular_logit",
]

#: The mechanisms a scenario can be built from, in the order of :func:`mixture_weights`.
MECHANISMS: tuple[str, ...] = (
    "location_duckling",
    "percentile",
    "multivariate",
    "absolute",
    "interactions",
)
#: Every scenario :func:`~lesionboost.simulate.simulate_slice3d` accepts.
SCENARIOS: tuple[str, ...] = ("default", *MECHANISMS, "mixed")

# Mechanism -> (intercept, strength). Chosen by exponential tilting on one simulated
# cohort of 1,042 patients (population seed 101, the cohort the default risk was fitted
# on): for each mechanism, the strength that gives an expected tabular-oracle pAUC
# (80 % TPR, label weights expit(logit)) of 0.177 -- the default risk's target -- with
# the intercept solved for an expected prevalence of 0.098 % at every trial strength.
_CALIBRATION: dict[str, tuple[float, float]] = {
    "location_duckling": (-12.0680, 0.7911),
    "percentile": (-12.0732, 2.8141),
    "multivariate": (-15.4257, 1.6465),
    "absolute": (-12.2191, 0.8030),
    "interactions": (-11.8744, 3.9555),
}

# Prevalence excess of the "mixed" hazard mixture. A mechanism's near-certain lesions count
# at most once in its prevalence; scaled by a weight w_j < 1, their odds leave saturation
# and they count for more than w_j, so sum_j w_j exp(a_j) gives an expected prevalence of
# about 0.098 % x w' R w, and mixed subtracts log(w' R w) from its logit. R was
# fitted by least squares to exp(-offset) over 50 weight vectors (the 5 single mechanisms
# and 45 flat Dirichlet draws), each offset solved exactly on the calibration cohort above;
# on fresh draws the corrected prevalence is 0.098 % within 2 %.
_MIXED_EXCESS = np.array(
    [
        [1.006, 1.226, 1.339, 1.320, 1.163],
        [1.226, 1.001, 1.457, 1.452, 1.320],
        [1.339, 1.457, 0.989, 1.492, 1.472],
        [1.320, 1.452, 1.492, 0.993, 1.301],
        [1.163, 1.320, 1.472, 1.301, 1.000],
    ]
)

_SOFT_CLIP = 3.0
_PERCENTILE_POWER = 20.0
_SHRINK_LESIONS = 10.0  # pseudo-lesions of the diagonal target in the patient covariance
_RIDGE = 0.01  # added to the patient covariance, in squared benign-SD units
# Index of each site in lesionboost.simulate._tables.SITES.
_SITE = {
    "posterior torso": 0,
    "anterior torso": 1,
    "head/neck": 2,
    "lower extremity": 3,
    "upper extremity": 4,
}

# Column -> (transform, benign centre, benign scale) on the transformed scale; a negative
# scale means "lower is riskier". Centres and scales are benign means and SDs of the real
# sample (the default risk's constants, lesionboost.simulate._risk.ABSOLUTE_TERMS) or, for
# columns the default does not standardise, of a simulated full-size benign cohort.
_STANDARD: dict[str, tuple[str, float, float]] = {
    "age_approx": ("identity", 58.0, 13.6),
    "clin_size_long_diam_mm": ("log", 1.30, 0.342),
    "tbp_lv_norm_color": ("identity", 3.06, 2.03),
    "tbp_lv_norm_border": ("identity", 3.45, 1.69),
    "tbp_lv_H": ("identity", 54.9, -5.49),
    "tbp_lv_nevi_confidence": ("identity", 38.4, -41.4),
    "tbp_lv_deltaB": ("identity", 1.40, -2.20),
    "tbp_lv_deltaL": ("identity", -8.78, 3.40),
    "tbp_lv_deltaA": ("identity", 4.97, 2.54),
    "tbp_lv_deltaLBnorm": ("log", 1.97, 0.286),
    "tbp_lv_radial_color_std_max": ("identity", 1.01, 0.734),
}


def check_scenario(scenario: object) -> str:
    """Return ``scenario`` if it names a scenario; raise ``ValueError`` listing them otherwise.

    Examples
    --------
    >>> check_scenario("percentile")
    'percentile'
    >>> check_scenario("ugly")
    Traceback (most recent call last):
    ...
    ValueError: Unknown scenario 'ugly'; choose one of: default, location_duckling, ...
    """
    if not isinstance(scenario, str) or scenario not in SCENARIOS:
        raise ValueError(f"Unknown scenario {scenario!r}; choose one of: {', '.join(SCENARIOS)}.")
    return scenario


def mixture_weights(seed: int) -> dict[str, float]:
    """The weights of the ``mixed`` scenario for ``seed``: a flat Dirichlet draw over
    :data:`MECHANISMS`, from a stream of the seed that nothing else draws from."""
    stream = np.random.SeedSequence(seed).spawn(4)[3]
    weights = np.random.default_rng(stream).dirichlet(np.ones(len(MECHANISMS)))
    return dict(zip(MECHANISMS, weights.tolist(), strict=True))


def _standard(name: str, values: np.ndarray) -> np.ndarray:
    transform, centre, scale = _STANDARD[name]
    x = np.log(values) if transform == "log" else np.asarray(values, dtype=float)
    return (x - centre) / scale


def _clip(values: np.ndarray) -> np.ndarray:
    return _SOFT_CLIP * np.tanh(values / _SOFT_CLIP)


def _percentile_rank(values: np.ndarray, group: np.ndarray) -> np.ndarray:
    """``(average rank - 1) / (n - 1)`` within each group, 0.5 in groups of one."""
    order = np.lexsort((values, group))
    g, v = group[order], values[order]
    n_rows = len(values)
    new_run = np.ones(n_rows, dtype=bool)  # start of a run of equal (group, value)
    new_run[1:] = (g[1:] != g[:-1]) | (v[1:] != v[:-1])
    run = np.cumsum(new_run) - 1
    position = np.arange(n_rows, dtype=float)
    mean_position = np.bincount(run, weights=position) / np.bincount(run)
    new_group = np.ones(n_rows, dtype=bool)
    new_group[1:] = g[1:] != g[:-1]
    group_start = np.maximum.accumulate(np.where(new_group, np.arange(n_rows), 0))
    _, group_index, counts = np.unique(g, return_inverse=True, return_counts=True)
    size = counts[group_index]
    rank = mean_position[run] - group_start  # 0-based average rank
    sorted_rank = np.where(size > 1, rank / np.maximum(size - 1, 1), 0.5)
    out = np.empty(n_rows)
    out[order] = sorted_rank
    return out


def _mahalanobis(x: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Distance of each row from its group's mean under the group's shrunk covariance."""
    _, inverse, counts = np.unique(group, return_inverse=True, return_counts=True)
    n_groups, d = len(counts), x.shape[1]
    means = np.column_stack([np.bincount(inverse, weights=x[:, a]) for a in range(d)])
    centred = x - (means / counts[:, None])[inverse]
    cov = np.empty((n_groups, d, d))
    for a in range(d):
        for b in range(a, d):
            value = np.bincount(inverse, weights=centred[:, a] * centred[:, b]) / counts
            cov[:, a, b] = cov[:, b, a] = value
    shrink = (counts / (counts + _SHRINK_LESIONS))[:, None, None]
    diagonal = np.einsum("gaa->ga", cov)[:, :, None] * np.eye(d)
    precision = np.linalg.inv(shrink * cov + (1 - shrink) * diagonal + _RIDGE * np.eye(d))
    squared = np.zeros(len(x))
    for a in range(d):
        for b in range(d):
            squared += centred[:, a] * centred[:, b] * precision[inverse, a, b]
    return np.sqrt(np.maximum(squared, 0.0))


def _location_duckling(lesion: dict[str, np.ndarray], patient: dict[str, np.ndarray]) -> np.ndarray:
    group = lesion["patient"] * len(LOCATIONS) + lesion["location"]
    columns = (
        ("clin_size_long_diam_mm", 1.0),
        ("tbp_lv_deltaLBnorm", 1.0),
        ("tbp_lv_norm_color", 1.0),
        ("tbp_lv_norm_border", 1.0),
        ("tbp_lv_H", -1.0),
    )
    return np.column_stack(
        [_clip(sign * within_group_z(lesion[name], group)) for name, sign in columns]
    )


def _percentile(lesion: dict[str, np.ndarray], patient: dict[str, np.ndarray]) -> np.ndarray:
    owner = lesion["patient"]
    columns = (
        ("clin_size_long_diam_mm", 1.0),
        ("tbp_lv_deltaLBnorm", 1.0),
        ("tbp_lv_radial_color_std_max", 1.0),
        ("tbp_lv_nevi_confidence", -1.0),
    )
    return np.column_stack(
        [
            _percentile_rank(sign * lesion[name], owner) ** _PERCENTILE_POWER
            for name, sign in columns
        ]
    )


def _multivariate(lesion: dict[str, np.ndarray], patient: dict[str, np.ndarray]) -> np.ndarray:
    names = (
        "clin_size_long_diam_mm",
        "tbp_lv_deltaL",
        "tbp_lv_deltaA",
        "tbp_lv_deltaB",
        "tbp_lv_norm_color",
        "tbp_lv_norm_border",
    )
    x = np.column_stack([_standard(name, lesion[name]) for name in names])
    return _mahalanobis(x, lesion["patient"])[:, None]


def _absolute(lesion: dict[str, np.ndarray], patient: dict[str, np.ndarray]) -> np.ndarray:
    owner = lesion["patient"]
    age = np.nan_to_num(patient["age"][owner], nan=58.0)
    terms = [
        0.8 * _clip(_standard("age_approx", age)),
        0.5 * (patient["male"][owner] - 0.5),
        1.0 * (lesion["site"] == _SITE["head/neck"]),
        0.25 * _clip(within_group_z(lesion["clin_size_long_diam_mm"], owner)),
    ]
    for name in (
        "clin_size_long_diam_mm",
        "tbp_lv_norm_color",
        "tbp_lv_norm_border",
        "tbp_lv_H",
        "tbp_lv_nevi_confidence",
        "tbp_lv_deltaB",
    ):
        terms.append(_clip(_standard(name, lesion[name])))
    return np.column_stack(terms)


def _interactions(lesion: dict[str, np.ndarray], patient: dict[str, np.ndarray]) -> np.ndarray:
    big = _standard("clin_size_long_diam_mm", lesion["clin_size_long_diam_mm"]) > 1.0
    variegated = _standard("tbp_lv_norm_color", lesion["tbp_lv_norm_color"]) > 0.8
    red = _standard("tbp_lv_H", lesion["tbp_lv_H"]) > 0.8
    non_naevoid = _standard("tbp_lv_nevi_confidence", lesion["tbp_lv_nevi_confidence"]) > 0.5
    site = lesion["site"]
    back_or_legs = (site == _SITE["posterior torso"]) | (site == _SITE["lower extremity"])
    sun_exposed = (site == _SITE["head/neck"]) | (site == _SITE["upper extremity"])
    return np.column_stack(
        [
            1.0 * (big & variegated & back_or_legs),
            1.0 * (red & non_naevoid & sun_exposed),
            0.5 * (big & red),
        ]
    )


_TERMS = {
    "location_duckling": _location_duckling,
    "percentile": _percentile,
    "multivariate": _multivariate,
    "absolute": _absolute,
    "interactions": _interactions,
}


def mechanism_terms(
    name: str, lesion: dict[str, np.ndarray], patient: dict[str, np.ndarray]
) -> np.ndarray:
    """The terms of mechanism ``name`` (one of :data:`MECHANISMS`), one column each.

    Each column is one summand of the mechanism's ``score``, its fixed weight
    included: ``mechanism_score`` is their sum. A learner that knows the form of a
    mechanism but not its weights fits one coefficient per column.
    """
    if name not in _TERMS:
        raise ValueError(f"Unknown mechanism {name!r}; choose one of: {', '.join(MECHANISMS)}.")
    return _TERMS[name](lesion, patient)


def mechanism_score(
    name: str, lesion: dict[str, np.ndarray], patient: dict[str, np.ndarray]
) -> np.ndarray:
    """The unscaled ``score`` of mechanism ``name``: the sum of its :func:`mechanism_terms`."""
    terms = mechanism_terms(name, lesion, patient)
    score = terms[:, 0].copy()
    for k in range(1, terms.shape[1]):  # left to right, the order the terms are listed in
        score += terms[:, k]
    return score


def followup_term(features: np.ndarray, risk: RiskModel) -> np.ndarray:
    """The default risk's follow-up term (coefficient x soft-clipped standardised score)."""
    k = TERM_NAMES.index("followup")
    return risk.coef[k] * features[:, k]


def scenario_tabular_logit(
    scenario: str,
    lesion: dict[str, np.ndarray],
    patient: dict[str, np.ndarray],
    features: np.ndarray,
    default_tabular: np.ndarray,
    risk: RiskModel,
    weights: dict[str, float] | None = None,
) -> np.ndarray:
    """``tabular_logit`` of every lesion under ``scenario``.

    Parameters
    ----------
    scenario : str
        One of :data:`SCENARIOS`.
    lesion, patient : dict of str to numpy.ndarray
        The population (:class:`~lesionboost.simulate._population.Population`).
    features : numpy.ndarray
        :func:`~lesionboost.simulate._risk.risk_features` of the same lesions.
    default_tabular : numpy.ndarray
        The default risk's ``tabular_logit``, returned as is for ``"default"``.
    risk : RiskModel
        The default risk (its follow-up coefficient is shared by every scenario).
    weights : dict of str to float, optional
        Mixture weights of ``"mixed"`` (:func:`mixture_weights`); required for it.
    """
    check_scenario(scenario)
    if scenario == "default":
        return default_tabular
    followup = followup_term(features, risk)
    if scenario != "mixed":
        intercept, strength = _CALIBRATION[scenario]
        return intercept + strength * mechanism_score(scenario, lesion, patient) + followup
    if weights is None:
        raise ValueError("The 'mixed' scenario needs its mixture weights.")
    w = np.array([weights.get(name, 0.0) for name in MECHANISMS], dtype=float)
    if w.min() < 0 or w.sum() <= 0:
        raise ValueError(f"Mixture weights must be >= 0 with a positive sum, got {weights!r}.")
    w /= w.sum()
    offset = -float(np.log(w @ _MIXED_EXCESS @ w))
    parts = []
    for name, weight in zip(MECHANISMS, w, strict=True):
        if weight > 0:
            intercept, strength = _CALIBRATION[name]
            score = mechanism_score(name, lesion, patient)
            parts.append(np.log(weight) + intercept + strength * score)
    return followup + offset + np.logaddexp.reduce(np.vstack(parts), axis=0)
