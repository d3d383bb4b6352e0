"""Named derived lesion attributes, written once for two back ends.

Each :class:`Derived` holds a formula over the raw SLICE-3D columns written
against a tiny operations interface (:class:`_Ops`). The same formula is
evaluated as a polars expression inside :class:`lesionboost.LesionFeaturizer`
and on pandas Series in the pandas peer of ``benchmarks/features.py``, so the
two implementations cannot drift apart.

Guarded arithmetic (why the formulas never produce NaN or inf):

* ratios divide by ``d`` where ``|d| >= 1e-5`` and by ``1e-5`` otherwise;
* square roots and logarithms take non-negative arguments (sums of squares,
  or sizes clipped at 0), and the geometric mean uses a real cube root.

A derived value is therefore missing only when one of its raw inputs is
missing (in practice ``age_approx``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

__all__ = ["DIV_EPS", "Derived", "DERIVED_FEATURES", "OUTLIER_COLUMNS", "PolarsOps", "PandasOps"]

#: Smallest magnitude a ratio's denominator may take.
DIV_EPS = 1e-5

# Short names for the raw columns used by the formulas.
_AGE = "age_approx"
_SIZE = "clin_size_long_diam_mm"
_A, _AEXT, _B, _BEXT = "tbp_lv_A", "tbp_lv_Aext", "tbp_lv_B", "tbp_lv_Bext"
_H, _HEXT, _L, _LEXT = "tbp_lv_H", "tbp_lv_Hext", "tbp_lv_L", "tbp_lv_Lext"
_AREA, _APR = "tbp_lv_areaMM2", "tbp_lv_area_perim_ratio"
_CSTD, _RADIAL = "tbp_lv_color_std_mean", "tbp_lv_radial_color_std_max"
_DA, _DB, _DL = "tbp_lv_deltaA", "tbp_lv_deltaB", "tbp_lv_deltaL"
_DLBN, _ECC = "tbp_lv_deltaLBnorm", "tbp_lv_eccentricity"
_MINOR, _NEVI = "tbp_lv_minorAxisMM", "tbp_lv_nevi_confidence"
_BORDER, _COLOR = "tbp_lv_norm_border", "tbp_lv_norm_color"
_PERIM, _STDL, _STDLEXT = "tbp_lv_perimeterMM", "tbp_lv_stdL", "tbp_lv_stdLExt"
_SYMM = "tbp_lv_symm_2axis"
_X, _Y, _Z = "tbp_lv_x", "tbp_lv_y", "tbp_lv_z"

#: Raw columns standardised within the patient for the outlier score: the
#: measurements with the largest malignant-vs-benign shifts in the real data
#: (on the public Kaggle training file, |effect| >= 0.4 benign SD) -- size, hue, colour spread.
OUTLIER_COLUMNS: tuple[str, ...] = (
    _AREA, _H, _PERIM, _MINOR, _DB, _SIZE, _HEXT, _B, _STDLEXT, _RADIAL, _CSTD,
    _AEXT, _COLOR, _A, _DLBN, _NEVI,
)  # fmt: skip


class _Ops:
    """Operations a formula may use; ``col`` returns a column of the back end."""

    def col(self, name: str) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def sqrt(self, x: Any) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def abs(self, x: Any) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def log1p(self, x: Any) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def atan2(self, y: Any, x: Any) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def cbrt(self, x: Any) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def nonneg(self, x: Any) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def div(self, num: Any, den: Any) -> Any:  # pragma: no cover - interface
        raise NotImplementedError


class PolarsOps(_Ops):
    """Formulas as polars expressions (the library path)."""

    def col(self, name: str) -> pl.Expr:
        return pl.col(name)

    def sqrt(self, x: pl.Expr) -> pl.Expr:
        return x.sqrt()

    def abs(self, x: pl.Expr) -> pl.Expr:
        return x.abs()

    def log1p(self, x: pl.Expr) -> pl.Expr:
        return x.log1p()

    def atan2(self, y: pl.Expr, x: pl.Expr) -> pl.Expr:
        return pl.arctan2(y, x)

    def cbrt(self, x: pl.Expr) -> pl.Expr:
        return x.cbrt()

    def nonneg(self, x: pl.Expr) -> pl.Expr:
        return x.clip(lower_bound=0.0)

    def div(self, num: pl.Expr, den: pl.Expr) -> pl.Expr:
        # A null denominator stays null (the comparison is null, so `otherwise` wins).
        return num / pl.when(den.abs() < DIV_EPS).then(DIV_EPS).otherwise(den)


class PandasOps(_Ops):
    """Formulas on pandas Series (the benchmark's pandas peer)."""

    def __init__(self, frame: Any) -> None:
        self.frame = frame

    def col(self, name: str) -> Any:
        return self.frame[name]

    def sqrt(self, x: Any) -> Any:
        return np.sqrt(x)

    def abs(self, x: Any) -> Any:
        return np.abs(x)

    def log1p(self, x: Any) -> Any:
        return np.log1p(x)

    def atan2(self, y: Any, x: Any) -> Any:
        return np.arctan2(y, x)

    def cbrt(self, x: Any) -> Any:
        return np.cbrt(x)

    def nonneg(self, x: Any) -> Any:
        return x.clip(lower=0.0)

    def div(self, num: Any, den: Any) -> Any:
        return num / den.mask(den.abs() < DIV_EPS, DIV_EPS)


@dataclass(frozen=True)
class Derived:
    """One derived lesion attribute: its name, meaning, source and formula."""

    name: str
    doc: str
    source: str
    formula: Callable[[_Ops], Any]

    def polars(self) -> pl.Expr:
        """The attribute as a Float64 polars expression named :attr:`name`."""
        return self.formula(PolarsOps()).alias(self.name)

    def inputs(self) -> list[str]:
        """Raw columns the formula reads."""
        return sorted(set(self.polars().meta.root_names()))


def _sq(o: _Ops, name: str) -> Any:
    return o.col(name) * o.col(name)


def _lab_distance(o: _Ops) -> Any:
    return _sq(o, _DA) + _sq(o, _DB) + _sq(o, _DL)


def _xyz_norm(o: _Ops) -> Any:
    return o.sqrt(_sq(o, _X) + _sq(o, _Y) + _sq(o, _Z))


def _harmonic(o: _Ops, a: str, b: str) -> Any:
    return o.div(o.col(a) * o.col(b), o.col(a) + o.col(b))


def _d(name: str, doc: str, source: str, formula: Callable[[_Ops], Any]) -> Derived:
    return Derived(name, doc, source, formula)


_GS, _P2, _P10 = "greysky", "2nd place", "10th place"

#: The derived lesion attributes, in output order (documented in lesionboost.features).
DERIVED_FEATURES: tuple[Derived, ...] = (
    # -- the public "Only Tabular Data" notebook set (42) ------------------------------------------
    _d("lesion_size_ratio", "minor axis / longest diameter", _GS,
       lambda o: o.div(o.col(_MINOR), o.col(_SIZE))),
    _d("lesion_shape_index", "area / perimeter^2", _GS,
       lambda o: o.div(o.col(_AREA), _sq(o, _PERIM))),
    _d("hue_contrast", "|H - Hext|", _GS, lambda o: o.abs(o.col(_H) - o.col(_HEXT))),
    _d("luminance_contrast", "|L - Lext|", _GS, lambda o: o.abs(o.col(_L) - o.col(_LEXT))),
    _d("lesion_color_difference", "sqrt(dA^2 + dB^2 + dL^2)", _GS,
       lambda o: o.sqrt(_lab_distance(o))),
    _d("border_complexity", "norm_border + symm_2axis", _GS,
       lambda o: o.col(_BORDER) + o.col(_SYMM)),
    _d("color_uniformity", "color_std_mean / radial_color_std_max", _GS,
       lambda o: o.div(o.col(_CSTD), o.col(_RADIAL))),
    _d("position_distance_3d", "sqrt(x^2 + y^2 + z^2)", _GS, _xyz_norm),
    _d("perimeter_to_area_ratio", "perimeter / area", _GS,
       lambda o: o.div(o.col(_PERIM), o.col(_AREA))),
    _d("area_to_perimeter_ratio", "area / perimeter", _GS,
       lambda o: o.div(o.col(_AREA), o.col(_PERIM))),
    _d("lesion_visibility_score", "deltaLBnorm + norm_color", _GS,
       lambda o: o.col(_DLBN) + o.col(_COLOR)),
    _d("symmetry_border_consistency", "symm_2axis * norm_border", _GS,
       lambda o: o.col(_SYMM) * o.col(_BORDER)),
    _d("consistency_symmetry_border", "symm*border / (symm + border)", _GS,
       lambda o: _harmonic(o, _SYMM, _BORDER)),
    _d("color_consistency", "stdL / Lext", _GS, lambda o: o.div(o.col(_STDL), o.col(_LEXT))),
    _d("consistency_color", "stdL*Lext / (stdL + Lext)", _GS,
       lambda o: _harmonic(o, _STDL, _LEXT)),
    _d("size_age_interaction", "longest diameter * age", _GS,
       lambda o: o.col(_SIZE) * o.col(_AGE)),
    _d("hue_color_std_interaction", "H * color_std_mean", _GS,
       lambda o: o.col(_H) * o.col(_CSTD)),
    _d("lesion_severity_index", "(norm_border + norm_color + eccentricity) / 3", _GS,
       lambda o: (o.col(_BORDER) + o.col(_COLOR) + o.col(_ECC)) / 3.0),
    _d("shape_complexity_index", "border_complexity + lesion_shape_index", _GS,
       lambda o: o.col(_BORDER) + o.col(_SYMM) + o.div(o.col(_AREA), _sq(o, _PERIM))),
    _d("color_contrast_index", "dA + dB + dL + deltaLBnorm", _GS,
       lambda o: o.col(_DA) + o.col(_DB) + o.col(_DL) + o.col(_DLBN)),
    _d("log_lesion_area", "ln(area + 1)", _GS, lambda o: o.log1p(o.nonneg(o.col(_AREA)))),
    _d("normalized_lesion_size", "longest diameter / age", _GS,
       lambda o: o.div(o.col(_SIZE), o.col(_AGE))),
    _d("mean_hue_difference", "(H + Hext) / 2", _GS, lambda o: (o.col(_H) + o.col(_HEXT)) / 2.0),
    _d("std_dev_contrast", "sqrt((dA^2 + dB^2 + dL^2) / 3)", _GS,
       lambda o: o.sqrt(_lab_distance(o) / 3.0)),
    _d("color_shape_composite_index", "(color_std_mean + area_perim_ratio + symm_2axis) / 3",
       _GS, lambda o: (o.col(_CSTD) + o.col(_APR) + o.col(_SYMM)) / 3.0),
    _d("lesion_orientation_3d", "atan2(y, x): angle of the lesion around the body axis", _GS,
       lambda o: o.atan2(o.col(_Y), o.col(_X))),
    _d("overall_color_difference", "(dA + dB + dL) / 3", _GS,
       lambda o: (o.col(_DA) + o.col(_DB) + o.col(_DL)) / 3.0),
    _d("symmetry_perimeter_interaction", "symm_2axis * perimeter", _GS,
       lambda o: o.col(_SYMM) * o.col(_PERIM)),
    _d("comprehensive_lesion_index",
       "(area_perim_ratio + eccentricity + norm_color + symm_2axis) / 4", _GS,
       lambda o: (o.col(_APR) + o.col(_ECC) + o.col(_COLOR) + o.col(_SYMM)) / 4.0),
    _d("color_variance_ratio", "color_std_mean / stdLExt", _GS,
       lambda o: o.div(o.col(_CSTD), o.col(_STDLEXT))),
    _d("border_color_interaction", "norm_border * norm_color", _GS,
       lambda o: o.col(_BORDER) * o.col(_COLOR)),
    _d("border_color_interaction_2", "border*color / (border + color)", _GS,
       lambda o: _harmonic(o, _BORDER, _COLOR)),
    _d("size_color_contrast_ratio", "longest diameter / deltaLBnorm", _GS,
       lambda o: o.div(o.col(_SIZE), o.col(_DLBN))),
    _d("age_normalized_nevi_confidence", "nevi_confidence / age", _GS,
       lambda o: o.div(o.col(_NEVI), o.col(_AGE))),
    _d("age_normalized_nevi_confidence_2", "sqrt(diameter^2 + age^2) (name kept from source)",
       _GS, lambda o: o.sqrt(_sq(o, _SIZE) + _sq(o, _AGE))),
    _d("color_asymmetry_index", "radial_color_std_max * symm_2axis", _GS,
       lambda o: o.col(_RADIAL) * o.col(_SYMM)),
    _d("volume_approximation_3d", "area * sqrt(x^2 + y^2 + z^2)", _GS,
       lambda o: o.col(_AREA) * _xyz_norm(o)),
    _d("color_range", "|L - Lext| + |A - Aext| + |B - Bext|", _GS,
       lambda o: o.abs(o.col(_L) - o.col(_LEXT)) + o.abs(o.col(_A) - o.col(_AEXT))
       + o.abs(o.col(_B) - o.col(_BEXT))),
    _d("shape_color_consistency", "eccentricity * color_std_mean", _GS,
       lambda o: o.col(_ECC) * o.col(_CSTD)),
    _d("border_length_ratio", "perimeter / circumference of the circle of equal area", _GS,
       lambda o: o.div(o.col(_PERIM),
                       2.0 * math.pi * o.sqrt(o.nonneg(o.col(_AREA)) / math.pi))),
    _d("age_size_symmetry_index", "age * longest diameter * symm_2axis", _GS,
       lambda o: o.col(_AGE) * o.col(_SIZE) * o.col(_SYMM)),
    _d("index_age_size_symmetry", "age * area * symm_2axis", _GS,
       lambda o: o.col(_AGE) * o.col(_AREA) * o.col(_SYMM)),
    # -- 2nd-place additions not already above (10) ----------------------------------------
    _d("asymmetry_ratio", "symm_2axis / perimeter", _P2,
       lambda o: o.div(o.col(_SYMM), o.col(_PERIM))),
    _d("asymmetry_area_ratio", "symm_2axis / area", _P2,
       lambda o: o.div(o.col(_SYMM), o.col(_AREA))),
    _d("color_variation_intensity", "norm_color * deltaLBnorm", _P2,
       lambda o: o.col(_COLOR) * o.col(_DLBN)),
    _d("color_contrast_ratio", "deltaLBnorm / L", _P2, lambda o: o.div(o.col(_DLBN), o.col(_L))),
    _d("border_density", "norm_border / perimeter", _P2,
       lambda o: o.div(o.col(_BORDER), o.col(_PERIM))),
    _d("area_diameter_ratio", "area / longest diameter^2", _P2,
       lambda o: o.div(o.col(_AREA), _sq(o, _SIZE))),
    _d("position_angle_3d_xz", "atan2(z, x): front/back angle of the lesion", _P2,
       lambda o: o.atan2(o.col(_Z), o.col(_X))),
    _d("texture_contrast", "stdL / L", _P2, lambda o: o.div(o.col(_STDL), o.col(_L))),
    _d("texture_uniformity", "1 / (1 + color_std_mean)", _P2,
       lambda o: 1.0 / (1.0 + o.nonneg(o.col(_CSTD)))),
    _d("color_difference_AB", "sqrt(dA^2 + dB^2): chromatic contrast only", _P2,
       lambda o: o.sqrt(_sq(o, _DA) + _sq(o, _DB))),
    # -- 10th-place additions (13) ---------------------------------------------------------
    _d("area_age_ratio", "area / age", _P10, lambda o: o.div(o.col(_AREA), o.col(_AGE))),
    _d("symmetry_eccentricity_interaction", "symm_2axis * eccentricity", _P10,
       lambda o: o.col(_SYMM) * o.col(_ECC)),
    _d("border_complexity_normalized", "norm_border / sqrt(area)", _P10,
       lambda o: o.div(o.col(_BORDER), o.sqrt(o.nonneg(o.col(_AREA))))),
    _d("color_variation_index", "color_std_mean * radial_color_std_max", _P10,
       lambda o: o.col(_CSTD) * o.col(_RADIAL)),
    _d("lesion_flatness", "sqrt(x^2 + y^2) / z", _P10,
       lambda o: o.div(o.sqrt(_sq(o, _X) + _sq(o, _Y)), o.col(_Z))),
    _d("relative_hue_difference", "|H - Hext| / (H + Hext)", _P10,
       lambda o: o.div(o.abs(o.col(_H) - o.col(_HEXT)), o.col(_H) + o.col(_HEXT))),
    _d("color_geometric_mean", "cube root of L * A * B", _P10,
       lambda o: o.cbrt(o.col(_L) * o.col(_A) * o.col(_B))),
    _d("norm_color_per_log_size", "norm_color / ln(1 + longest diameter)", _P10,
       lambda o: o.div(o.col(_COLOR), o.log1p(o.nonneg(o.col(_SIZE))))),
    _d("norm_L", "(stdL + color_std_mean) / L", _P10,
       lambda o: o.div(o.col(_STDL) + o.col(_CSTD), o.col(_L))),
    _d("norm_A", "(stdL + color_std_mean) / |A|", _P10,
       lambda o: o.div(o.col(_STDL) + o.col(_CSTD), o.abs(o.col(_A)))),
    _d("norm_B", "(stdL + color_std_mean) / |B|", _P10,
       lambda o: o.div(o.col(_STDL) + o.col(_CSTD), o.abs(o.col(_B)))),
    _d("area_ratio", "area of the circle on the longest diameter / lesion area", _P10,
       lambda o: o.div(math.pi / 4.0 * _sq(o, _SIZE), o.col(_AREA))),
    _d("weighted_area_ratio", "ln(1 + area_ratio * area)", _P10,
       lambda o: o.log1p(o.nonneg(o.div(math.pi / 4.0 * _sq(o, _SIZE), o.col(_AREA))
                                  * o.col(_AREA)))),
)  # fmt: skip

#: Derived names by name, for lookups.
DERIVED_BY_NAME: dict[str, Derived] = {d.name: d for d in DERIVED_FEATURES}
