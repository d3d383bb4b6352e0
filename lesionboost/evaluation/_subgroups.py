"""Subgroups of the scored lesions: sex, age band, site, centre, tile type and skin tone."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl
from sklearn.metrics import roc_auc_score

from ..metrics import pauc_above_tpr
from ._bootstrap import _bootstrap_roc, _percentile_interval

#: A subgroup level needs this many malignant lesions to be flagged as the weakest.
MIN_MALIGNANT_FOR_WEAKEST = 5
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
