"""The simulator's calibration tables, as loaded at run time.

Everything the simulator learned from the benign rows of a real SLICE-3D sample
lives in ``_tables.json`` next to this module: quantile tables, normal-score
regression coefficients, between- and within-patient correlation matrices,
body-position tables, missingness rates by centre, the vocabularies of the
train-only columns and the risk coefficients. They are derived statistics, never
rows. The offline fit that writes them is :mod:`lesionboost.simulate._calibrate`,
which nothing here imports.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "CENTRES",
    "FREE_COLUMNS",
    "FREE_NAMES",
    "SITES",
    "TABLES_PATH",
    "ZERO_INFLATED",
    "design_matrix",
    "followup_design",
    "load_tables",
    "quantile_lookup",
]

TABLES_PATH = Path(__file__).with_name("_tables.json")

#: The 7 training centres: (attribution, rows, positives, licence, share of white tiles).
#: Public counts of the Kaggle training file; licence = f(centre).
CENTRES: tuple[tuple[str, int, int, str, float], ...] = (
    ("Memorial Sloan Kettering Cancer Center", 129_068, 174, "CC-BY", 0.88),
    ("Department of Dermatology, Hospital Clínic de Barcelona", 105_724, 72, "CC-BY-NC", 0.0),
    ("University Hospital of Basel", 65_218, 13, "CC-BY-NC", 0.004),
    (
        "Frazer Institute, The University of Queensland, Dermatology Research Centre",
        51_768,
        81,
        "CC-BY",
        0.04,
    ),
    ("ACEMID MIA", 28_665, 33, "CC-0", 0.0),
    (
        "ViDIR Group, Department of Dermatology, Medical University of Vienna",
        12_640,
        14,
        "CC-BY-NC",
        0.0,
    ),
    (
        "Department of Dermatology, University of Athens, Andreas Syggros Hospital of Skin and "
        "Venereal Diseases, Alexander Stratigos, Konstantinos Liopyris",
        7_976,
        6,
        "CC-BY",
        0.0,
    ),
)


#: Body sites in the order used by the design matrix; ``None`` = location "Unknown".
SITES: tuple[str | None, ...] = (
    "posterior torso",
    "anterior torso",
    "head/neck",
    "lower extremity",
    "upper extremity",
    None,
)


#: Free lesion columns: (name, tabulation transform, zero-inflated). Everything else
#: in the file is computed from these by the exact relations of the data.
FREE_COLUMNS: tuple[tuple[str, str, bool], ...] = (
    ("clin_size_long_diam_mm", "log", False),
    ("minor_ratio", "identity", False),  # minorAxisMM / clin_size_long_diam_mm, <= 1
    ("area_ratio", "identity", False),  # areaMM2 / (pi/4 * clin_size * minorAxis)
    ("tbp_lv_area_perim_ratio", "log", False),
    ("tbp_lv_Lext", "identity", False),
    ("tbp_lv_Aext", "identity", False),
    ("tbp_lv_Bext", "identity", False),
    ("tbp_lv_deltaL", "identity", False),
    ("tbp_lv_deltaA", "identity", False),
    ("tbp_lv_deltaB", "identity", False),
    ("deltaLB_excess", "log", False),  # deltaLB - sqrt(deltaL^2 + deltaB^2), > 0
    ("tbp_lv_deltaLBnorm", "log", False),
    ("tbp_lv_stdL", "log", False),
    ("tbp_lv_stdLExt", "log", False),
    ("tbp_lv_color_std_mean", "identity", True),
    ("tbp_lv_norm_color", "identity", True),
    ("tbp_lv_radial_color_std_max", "identity", True),
    ("tbp_lv_norm_border", "identity", False),
    ("tbp_lv_symm_2axis", "identity", False),
    ("tbp_lv_eccentricity", "identity", False),
    ("tbp_lv_nevi_confidence", "log10", False),
)


FREE_NAMES: tuple[str, ...] = tuple(name for name, _, _ in FREE_COLUMNS)


ZERO_INFLATED: tuple[str, ...] = tuple(name for name, _, zero in FREE_COLUMNS if zero)


# Probability grid of the stored quantile tables (finer in the tails).
_PROBS = np.unique(
    np.concatenate([np.linspace(0, 1, 251), [0.0005, 0.001, 0.002, 0.998, 0.999, 0.9995]])
)


_AGE_CENTRE, _AGE_SCALE = 58.0, 13.6


_FORWARD: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "identity": lambda v: v,
    "log": np.log,
    "log10": np.log10,
}


_INVERSE: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "identity": lambda v: v,
    "log": np.exp,
    "log10": lambda v: np.power(10.0, v),
}


def design_matrix(
    white: np.ndarray,
    site: np.ndarray,
    centre: np.ndarray,
    age: np.ndarray,
    male: np.ndarray,
) -> np.ndarray:
    """Covariates of the normal-score regression (shared by the fit and the simulator).

    Parameters are per-row arrays: ``white`` 0/1, ``site`` index into :data:`SITES`,
    ``centre`` index into :data:`CENTRES`, ``age`` in years (NaN = missing) and
    ``male`` 1/0/0.5 (0.5 = missing).
    """
    n = len(white)
    columns = [np.ones(n), np.asarray(white, dtype=float)]
    columns += [(site == k).astype(float) for k in range(1, len(SITES))]
    columns += [(centre == k).astype(float) for k in range(1, len(CENTRES))]
    age_z = (
        np.nan_to_num(np.asarray(age, dtype=float), nan=_AGE_CENTRE) - _AGE_CENTRE
    ) / _AGE_SCALE
    columns += [age_z, np.asarray(male, dtype=float) - 0.5]
    return np.column_stack(columns)


def quantile_lookup(table: dict[str, Any], u: np.ndarray) -> np.ndarray:
    """Map uniforms ``u`` through a stored quantile table (interpolated in its transform)."""
    values = np.interp(u, table.get("probs", _PROBS), table["values"])
    return _INVERSE[table["transform"]](values)


def followup_design(
    normal_scores: np.ndarray, columns: dict[str, np.ndarray], covariates: np.ndarray
) -> np.ndarray:
    """Inputs of the follow-up model, shared by its fit and the simulator.

    The free columns' normal scores, a "is exactly 0" flag per zero-inflated free
    column (flat lesions tie at one normal score, which a linear model cannot
    separate from small positive values), and the covariates of
    :func:`design_matrix` without its intercept (tile type, site, centre, age, sex).
    """
    flags = [np.asarray(columns[name]) == 0 for name in ZERO_INFLATED]
    return np.column_stack([normal_scores, *flags, covariates[:, 1:]]).astype(float)


@functools.lru_cache(maxsize=1)
def load_tables() -> dict[str, Any]:
    """The stored calibration tables (read once per process)."""
    with open(TABLES_PATH, encoding="utf8") as handle:
        tables = json.load(handle)
    for name in ("beta", "sigma_between", "sigma_within", "total_sd"):
        tables[name] = np.asarray(tables[name], dtype=float)
    return tables
