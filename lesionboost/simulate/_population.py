"""Patients and the observable columns of their lesions (the benign population model).

Nothing here knows about malignancy: this module draws every column a Kaggle
file shows, from the calibration tables of :mod:`lesionboost.simulate._calibrate`.
The latent risk and the label are drawn afterwards from these columns
(:mod:`lesionboost.simulate._risk`); no column is changed once a label exists.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special

from ..schema import LOCATION_TO_SIMPLE, SIMPLE_TO_SITE
from ._tables import (
    CENTRES,
    FREE_COLUMNS,
    SITES,
    design_matrix,
    load_tables,
    quantile_lookup,
)

__all__ = ["Population", "draw_population", "lesion_columns", "LOCATIONS", "LOCATION_WEIGHTS"]

# Lesions per patient: public quantiles of the Kaggle training file (p0, p25, p50, p75,
# p90, p95, p99, max) with one extra upper knot so that 1,042 patients hold
# ~401k lesions; interpolated on the log scale.
_COUNT_PROBS = np.array([0.0, 0.25, 0.5, 0.75, 0.90, 0.95, 0.99, 0.995, 1.0])
_COUNT_LOG = np.log([1.0, 115.0, 241.5, 477.5, 822.9, 1122.65, 2157.58, 3400.0, 9184.0])

# Patients by age (negatives of the public Kaggle training file): age -> rows.
_AGE_COUNTS = {
    5: 1, 15: 624, 20: 1741, 25: 3431, 30: 10343, 35: 11034, 40: 30465, 45: 22943, 50: 47429,
    55: 53751, 60: 53334, 65: 53713, 70: 38207, 75: 30354, 80: 21072, 85: 8832,
}  # fmt: skip
_MALE_SHARE = 265_546 / (265_546 + 123_996)

# Rows per tbp_lv_location in the public Kaggle training file, "Unknown" excluded:
# its share is set by the centre's missing-site habit.
_LOCATION_ROWS = {
    "Torso Back Top Third": 71_112, "Torso Front Top Half": 63_350,
    "Torso Back Middle Third": 46_185, "Left Leg - Lower": 27_428, "Right Leg - Lower": 25_208,
    "Torso Front Bottom Half": 24_360, "Left Leg - Upper": 23_673, "Right Leg - Upper": 23_034,
    "Right Arm - Upper": 22_972, "Left Arm - Upper": 22_816, "Head & Neck": 12_046,
    "Left Arm - Lower": 11_939, "Right Arm - Lower": 10_636, "Torso Back Bottom Third": 4_596,
    "Left Leg": 1_974, "Right Leg": 1_711, "Left Arm": 1_593, "Right Arm": 601,
    "Torso Front": 60, "Torso Back": 9,
}  # fmt: skip
LOCATIONS: tuple[str, ...] = (*_LOCATION_ROWS, "Unknown")
LOCATION_WEIGHTS = np.array(list(_LOCATION_ROWS.values()), dtype=float)
LOCATION_WEIGHTS /= LOCATION_WEIGHTS.sum()

# A few MSKCC patients have their body model shifted (negative y, mirrored x and z).
_SHIFTED_FRAME_RATE = 0.01
_HEIGHT_SD = 0.03  # patient body-height factor applied to y


@dataclass(frozen=True)
class Population:
    """Patient- and lesion-level arrays of one simulated cohort (no labels yet)."""

    patient: dict[str, np.ndarray]  # one entry per patient
    lesion: dict[str, np.ndarray]  # one entry per lesion, incl. "patient" (row -> patient)
    #: Standard-normal scores of the free columns (rows x FREE_COLUMNS), the scale
    #: the calibration tables model them on, and the covariate design of every row
    #: (:func:`~lesionboost.simulate._tables.design_matrix`); the follow-up
    #: model reads both.
    normal_scores: np.ndarray
    covariates: np.ndarray

    @property
    def n_lesions(self) -> int:
        return len(self.lesion["patient"])


def _factor(matrix: np.ndarray) -> np.ndarray:
    """A square root ``F`` with ``F @ F.T == matrix`` for a PSD (possibly singular) matrix."""
    values, vectors = np.linalg.eigh((np.asarray(matrix) + np.asarray(matrix).T) / 2)
    return vectors * np.sqrt(np.clip(values, 0, None))


def _stratified_uniform(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation((np.arange(n) + rng.random(n)) / n)


def _row_strata(counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One uniform per patient whose *row-weighted* distribution is (almost) exactly uniform.

    Patients are laid end to end in a random order on [0, 1], each covering a share
    equal to its share of the lesions, and get the midpoint of their stretch. Drawing
    patient-level attributes through these uniforms makes row shares (centres, ages,
    tile types) match their targets even though a few patients hold thousands of
    lesions, while keeping the attribute independent of the lesion count.
    """
    order = rng.permutation(len(counts))
    ends = np.cumsum(counts[order]) / counts.sum()
    u = np.empty(len(counts))
    u[order] = ends - counts[order] / counts.sum() / 2
    return u


def _draw_patients(
    n: int, rng: np.random.Generator, tables: dict[str, Any]
) -> dict[str, np.ndarray]:
    counts = np.maximum(
        np.rint(np.exp(np.interp(_stratified_uniform(n, rng), _COUNT_PROBS, _COUNT_LOG))), 1
    ).astype(np.int64)
    centre_rows = np.array([rows for _, rows, *_ in CENTRES], dtype=float)
    edges = np.concatenate([[0.0], np.cumsum(centre_rows) / centre_rows.sum()])
    u_centre = _row_strata(counts, rng)
    centre = np.clip(np.searchsorted(edges, u_centre, side="right") - 1, 0, len(CENTRES) - 1)
    # Within a centre, the position inside its stretch decides the tile type, so the
    # row share of white tiles per centre is also close to its target.
    within_centre = (u_centre - edges[centre]) / (edges[centre + 1] - edges[centre])
    white_share = np.array([white for *_, white in CENTRES])
    white = within_centre < white_share[centre]
    ages = np.array(list(_AGE_COUNTS), dtype=float)
    age_cdf = np.cumsum(list(_AGE_COUNTS.values())) / sum(_AGE_COUNTS.values())
    age = ages[np.minimum(np.searchsorted(age_cdf, _row_strata(counts, rng)), len(ages) - 1)]
    missing = tables["missing"]
    age[rng.random(n) < np.asarray(missing["age_approx"])[centre]] = np.nan
    male = (_row_strata(counts, rng) < _MALE_SHARE).astype(float)
    male[rng.random(n) < np.asarray(missing["sex"])[centre]] = 0.5  # 0.5 = unknown
    k = len(FREE_COLUMNS)
    between = _factor(tables["sigma_between"])
    shifted = (centre == 0) & (rng.random(n) < _SHIFTED_FRAME_RATE)
    return {
        "centre": centre,
        "white": white,
        "age": age,
        "male": male,
        "n_lesions": counts,
        "phenotype": rng.standard_normal((n, k)) @ between.T,  # patient random effect
        "height": 1.0 + _HEIGHT_SD * rng.standard_normal(n),
        "shifted_frame": shifted,
        "frame_offset": np.where(shifted, -1080.0 + 40.0 * rng.standard_normal(n), 0.0),
    }


def _draw_locations(
    patient: np.ndarray, centre: np.ndarray, rng: np.random.Generator, tables: dict[str, Any]
) -> np.ndarray:
    n = len(patient)
    location = rng.choice(len(LOCATION_WEIGHTS), n, p=LOCATION_WEIGHTS)
    unknown = rng.random(n) < np.asarray(tables["missing"]["anatom_site_general"])[centre[patient]]
    location[unknown] = len(LOCATIONS) - 1
    return location


def _positions(
    location: np.ndarray, rng: np.random.Generator, tables: dict[str, Any]
) -> np.ndarray:
    """3D coordinates from per-location Gaussian copulas over empirical marginals."""
    position = tables["position"]
    probs = np.asarray(position["_probs"])
    xyz = np.empty((len(location), 3))
    for code, name in enumerate(LOCATIONS):
        rows = np.flatnonzero(location == code)
        if not len(rows):
            continue
        entry = position[name]
        chol = _factor(entry["corr"])
        u = special.ndtr(rng.standard_normal((len(rows), 3)) @ chol.T)
        for j in range(3):
            xyz[rows, j] = np.interp(u[:, j], probs, entry["quantiles"][j])
    return xyz


def _columns_from_scores(u: np.ndarray, tables: dict[str, Any]) -> dict[str, np.ndarray]:
    """Map uniforms of the free columns to values, then apply the exact relations."""
    quantiles, zero_mass = tables["quantiles"], tables["zero_mass"]
    free: dict[str, np.ndarray] = {}
    for k, (name, _, zero_inflated) in enumerate(FREE_COLUMNS):
        uk = u[:, k]
        if zero_inflated:
            p0 = zero_mass[name]
            free[name] = quantile_lookup(quantiles[name], np.clip((uk - p0) / (1 - p0), 0, 1))
        else:
            free[name] = quantile_lookup(quantiles[name], uk)
    # Colour variation is zero on the same lesions for color_std_mean and norm_color,
    # and radial_color_std_max is zero on those and a few more (as in the Kaggle training file).
    k_csm = [name for name, *_ in FREE_COLUMNS].index("tbp_lv_color_std_mean")
    k_rad = [name for name, *_ in FREE_COLUMNS].index("tbp_lv_radial_color_std_max")
    flat = u[:, k_csm] < zero_mass["tbp_lv_color_std_mean"]
    for name in ("tbp_lv_color_std_mean", "tbp_lv_norm_color"):
        free[name] = np.where(flat, 0.0, free[name])
    rad_zero = flat | (u[:, k_rad] < zero_mass["tbp_lv_radial_color_std_max"])
    free["tbp_lv_radial_color_std_max"] = np.where(
        rad_zero, 0.0, free["tbp_lv_radial_color_std_max"]
    )
    return lesion_columns(free)


def lesion_columns(free: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The lesion columns of a Kaggle row from its free columns, by the exact relations.

    Parameters
    ----------
    free : mapping of str to numpy.ndarray
        One array per name of ``FREE_COLUMNS`` (the 21 free columns, among them the
        helpers ``minor_ratio``, ``area_ratio`` and ``deltaLB_excess``).

    Returns
    -------
    dict of str to numpy.ndarray
        The 29 derived and free ``tbp_lv_*`` / size columns: ``L = Lext + deltaL``
        (same for A and B), ``C = hypot(A, B)``, ``H = atan2(B, A)`` in degrees,
        ``deltaLB = hypot(deltaL, deltaB) + excess``, minor axis = ratio x long
        diameter (<= it), area of the ellipse x ``area_ratio``, perimeter =
        ``sqrt(area_perim_ratio x area)``, size to 2 decimals (>= 1 mm), border and
        colour scores capped at 10.

    Examples
    --------
    >>> import numpy as np
    >>> from lesionboost.simulate._tables import FREE_COLUMNS
    >>> free = {name: np.array([2.0]) for name, *_ in FREE_COLUMNS}
    >>> cols = lesion_columns(free)
    >>> float(cols["tbp_lv_L"][0]), float(cols["tbp_lv_minorAxisMM"][0])
    (4.0, 2.0)
    """
    size = np.maximum(np.round(free["clin_size_long_diam_mm"], 2), 1.0)
    minor = size * np.minimum(free["minor_ratio"], 1.0)
    area = free["area_ratio"] * math.pi / 4 * size * minor
    ratio = free["tbp_lv_area_perim_ratio"]
    lext, aext, bext = free["tbp_lv_Lext"], free["tbp_lv_Aext"], free["tbp_lv_Bext"]
    d_l, d_a, d_b = free["tbp_lv_deltaL"], free["tbp_lv_deltaA"], free["tbp_lv_deltaB"]
    lum, a, b = lext + d_l, aext + d_a, bext + d_b
    return {
        "clin_size_long_diam_mm": size,
        "tbp_lv_A": a,
        "tbp_lv_Aext": aext,
        "tbp_lv_B": b,
        "tbp_lv_Bext": bext,
        "tbp_lv_C": np.hypot(a, b),
        "tbp_lv_Cext": np.hypot(aext, bext),
        "tbp_lv_H": np.degrees(np.arctan2(b, a)),
        "tbp_lv_Hext": np.degrees(np.arctan2(bext, aext)),
        "tbp_lv_L": lum,
        "tbp_lv_Lext": lext,
        "tbp_lv_areaMM2": area,
        "tbp_lv_area_perim_ratio": ratio,
        "tbp_lv_color_std_mean": free["tbp_lv_color_std_mean"],
        "tbp_lv_deltaA": d_a,
        "tbp_lv_deltaB": d_b,
        "tbp_lv_deltaL": d_l,
        "tbp_lv_deltaLB": np.hypot(d_l, d_b) + free["deltaLB_excess"],
        "tbp_lv_deltaLBnorm": free["tbp_lv_deltaLBnorm"],
        "tbp_lv_eccentricity": free["tbp_lv_eccentricity"],
        "tbp_lv_minorAxisMM": minor,
        "tbp_lv_nevi_confidence": free["tbp_lv_nevi_confidence"],
        "tbp_lv_norm_border": np.minimum(free["tbp_lv_norm_border"], 10.0),
        "tbp_lv_norm_color": np.minimum(free["tbp_lv_norm_color"], 10.0),
        "tbp_lv_perimeterMM": np.sqrt(ratio * area),
        "tbp_lv_radial_color_std_max": free["tbp_lv_radial_color_std_max"],
        "tbp_lv_stdL": free["tbp_lv_stdL"],
        "tbp_lv_stdLExt": free["tbp_lv_stdLExt"],
        "tbp_lv_symm_2axis": free["tbp_lv_symm_2axis"],
    }


def draw_population(
    n_patients: int, rng: np.random.Generator, tables: dict[str, Any] | None = None
) -> Population:
    """Draw ``n_patients`` patients and every observable column of their lesions.

    Parameters
    ----------
    n_patients : int
        Number of patients (>= 1).
    rng : numpy.random.Generator
        Source of randomness; the result is a pure function of its state.
    tables : dict, optional
        Calibration tables; the stored ones by default.
    """
    tables = load_tables() if tables is None else tables
    patients = _draw_patients(n_patients, rng, tables)
    patient = np.repeat(np.arange(n_patients), patients["n_lesions"])
    n = len(patient)
    centre = patients["centre"]
    location = _draw_locations(patient, centre, rng, tables)
    site_index = {name: k for k, name in enumerate(SITES)}
    location_site = np.array(
        [site_index[SIMPLE_TO_SITE[LOCATION_TO_SIMPLE[name]]] for name in LOCATIONS]
    )
    site = location_site[location]

    # Normal scores: covariate means + patient phenotype + lesion-level Gaussian part.
    design = design_matrix(
        patients["white"][patient].astype(float),
        site,
        centre[patient],
        patients["age"][patient],
        patients["male"][patient],
    )
    k = len(FREE_COLUMNS)
    within = _factor(tables["sigma_within"])
    scores = design @ tables["beta"] + patients["phenotype"][patient]
    scores += rng.standard_normal((n, k)) @ within.T
    u = special.ndtr(scores / tables["total_sd"])
    columns = _columns_from_scores(u, tables)

    angle_p = np.asarray(tables["angle_probs"], dtype=float)
    columns["tbp_lv_symm_2axis_angle"] = 5 * rng.choice(len(angle_p), n, p=angle_p / angle_p.sum())
    xyz = _positions(location, rng, tables)
    xyz[:, 1] *= patients["height"][patient]
    shifted = patients["shifted_frame"][patient]
    xyz[shifted, 0] *= -1
    xyz[shifted, 2] *= -1
    xyz[:, 1] += patients["frame_offset"][patient]
    columns["tbp_lv_x"], columns["tbp_lv_y"], columns["tbp_lv_z"] = xyz.T
    columns["patient"] = patient
    columns["location"] = location
    columns["site"] = site
    return Population(
        patient=patients,
        lesion=columns,
        normal_scores=scores / tables["total_sd"],
        covariates=design,
    )
