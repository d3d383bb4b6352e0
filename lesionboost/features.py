"""Derived and patient-relative ("ugly duckling") lesion features in polars.

:class:`LesionFeaturizer` turns SLICE-3D metadata (pandas or polars, one row per
lesion, with ``patient_id``) into a model-ready feature frame. Every feature is a
polars expression and the whole transform is one lazy query plan.

Feature groups (switch them with ``groups=``)
---------------------------------------------
Always present: the 34 raw numeric columns (Float32) and the 6 categorical
columns as Int32 codes (0 = missing, 1 = level not seen at fit, 2.. = the
levels seen at fit, sorted).

``"derived"``
    65 named lesion attributes of the public tabular lineage (below).
``"patient"``
    For every raw numeric and derived column, within the patient's lesions of
    the frame being transformed: the z-score ``(x - mean) / (sd + eps)``
    (``<col>__z_patient``) and, for the columns chosen by ``rank_columns``, the
    percentile rank ``(rank - 1) / (n - 1)`` with ties averaged
    (``<col>__rank_patient``).
``"region"``
    The same z-scores and ranks within patient x ``tbp_lv_location_simple``
    (``__z_patient_location``, ``__rank_patient_location``) and patient x
    ``anatom_site_general`` (``__z_patient_site``, ``__rank_patient_site``;
    lesions with a missing site or location form their own group).
``"outlier"``
    Ugly-duckling summaries over the patient z-scores of every numeric column
    (``ud_count_abs_z_gt`` = number of columns with ``|z| > z_threshold``,
    ``ud_max_abs_z``, ``ud_std_abs_z``) and ``outlier_score``: the distance of
    the lesion from its patient's mean in the space of the 16 standardised key
    columns (:data:`OUTLIER_COLUMNS`), ``sqrt(mean(z^2))`` over the key columns
    the lesion has (0 if none) -- a diagonal Mahalanobis distance. It was chosen
    over a per-patient LocalOutlierFactor on the same columns (the 1st-place
    recipe) because ``benchmarks/ablation.py`` scores both alike (OOF pAUC
    0.1543 vs 0.1549 on the simulator, 0.1524 vs 0.1506 on the real sample)
    while the distance takes 0.04-0.07 s on 401k lesions and the LOF 3.4-57 s.
``"counts"``
    Lesions per patient, per patient x site and per patient x location, and the
    total lesion area per patient and per patient x site.

Percentile ranks are off by default (``rank_columns="none"``). A rank costs a
sort per column and group, several z-scores: with every column ranked in all
three groupings the transform of 401k lesions takes ~8 s instead of ~1.1 s on two
cores, and in patient-grouped cross-validation (``benchmarks/ablation.py``) the
ranks added nothing measurable over the z-scores -- simulator, 3 seeds: OOF pAUC
0.1543 with every rank, 0.1566 with the 16 key columns ranked, 0.1576 without;
real 3,449-row sample: 0.1524 / 0.1516 / 0.1506, all about one seed-to-seed SD apart.
The simulator's risk is built on within-patient z-scores, so it cannot reward
ranks, and the sample holds ~5 lesions per patient: on the full Kaggle data
(~385 lesions per patient) it is worth checking ``rank_columns="key"`` or
``"all"``.

Patient statistics use only the rows of the frame being transformed, so new
patients at predict time are handled exactly like the Kaggle test set, and a
lesion's features depend on its own patient's lesions only.

Defined values, never NaN or inf: a patient (or patient x region) with one
lesion, or one non-missing value, gets z = 0 and rank = 0.5; zero variance gives
z = 0 (the numerator is 0) and rank = 0.5 (all ties); ratios use a guarded
denominator (``|d| < 1e-5`` becomes ``1e-5``). A feature is missing (null) only
where a raw input it reads is missing (in practice ``age_approx``).

Train-only (leak) columns present in ``X`` are dropped with a
:class:`~lesionboost.DataWarning`; identifiers (``isic_id``, ``patient_id``) and
the constant or redundant ``image_type`` and ``copyright_license`` (a function
of ``attribution``) never become features.

Derived attributes (``"derived"`` group)
----------------------------------------
greysky "Only Tabular Data" notebook:

- ``lesion_size_ratio`` = minor axis / longest diameter: roundness, 1 = circular.
- ``lesion_shape_index`` = area / perimeter^2: compactness; low = ragged outline.
- ``hue_contrast`` = \\|H - Hext\\|: hue difference from the surrounding skin.
- ``luminance_contrast`` = \\|L - Lext\\|: lightness difference from the skin.
- ``lesion_color_difference`` = sqrt(dA^2 + dB^2 + dL^2): Lab colour distance to the skin.
- ``border_complexity`` = norm_border + symm_2axis: border irregularity plus asymmetry.
- ``color_uniformity`` = color_std_mean / radial_color_std_max: overall vs radial colour spread.
- ``position_distance_3d`` = sqrt(x^2 + y^2 + z^2): distance from the body-model origin.
- ``perimeter_to_area_ratio`` = perimeter / area: outline length per unit area.
- ``area_to_perimeter_ratio`` = area / perimeter: its inverse, grows with size.
- ``lesion_visibility_score`` = deltaLBnorm + norm_color: how much the lesion stands out.
- ``symmetry_border_consistency`` = symm_2axis x norm_border: asymmetric and ragged at once.
- ``consistency_symmetry_border`` = symm.border / (symm + border): their harmonic blend.
- ``color_consistency`` = stdL / Lext: lightness texture relative to skin lightness.
- ``consistency_color`` = stdL.Lext / (stdL + Lext): harmonic blend of the two.
- ``size_age_interaction`` = diameter x age: large lesions in older patients.
- ``hue_color_std_interaction`` = H x color_std_mean: hue weighted by colour irregularity.
- ``lesion_severity_index`` = (norm_border + norm_color + eccentricity) / 3: ABC-style score.
- ``shape_complexity_index`` = border_complexity + lesion_shape_index: outline complexity.
- ``color_contrast_index`` = dA + dB + dL + deltaLBnorm: summed signed colour contrast.
- ``log_lesion_area`` = ln(area + 1): lesion area on a log scale.
- ``normalized_lesion_size`` = diameter / age: size relative to age (= 2nd place's
  size_age_ratio).
- ``mean_hue_difference`` = (H + Hext) / 2: average hue of lesion and skin.
- ``std_dev_contrast`` = sqrt((dA^2 + dB^2 + dL^2) / 3): RMS colour contrast.
- ``color_shape_composite_index`` = (color_std_mean + area_perim_ratio + symm_2axis) / 3:
  colour and shape irregularity.
- ``lesion_orientation_3d`` = atan2(y, x): angular position on the body model.
- ``overall_color_difference`` = (dA + dB + dL) / 3: mean signed colour contrast.
- ``symmetry_perimeter_interaction`` = symm_2axis x perimeter: asymmetry scaled by size.
- ``comprehensive_lesion_index`` = (area_perim_ratio + eccentricity + norm_color +
  symm_2axis) / 4: overall irregularity.
- ``color_variance_ratio`` = color_std_mean / stdLExt: lesion colour spread vs skin texture.
- ``border_color_interaction`` = norm_border x norm_color: irregular border and colour together.
- ``border_color_interaction_2`` = border.color / (border + color): their harmonic blend.
- ``size_color_contrast_ratio`` = diameter / deltaLBnorm: large but faint lesions score high.
- ``age_normalized_nevi_confidence`` = nevi_confidence / age: nevus likelihood per year.
- ``age_normalized_nevi_confidence_2`` = sqrt(diameter^2 + age^2): size-age magnitude
  (the source's name is kept).
- ``color_asymmetry_index`` = radial_color_std_max x symm_2axis: colour and shape asymmetry.
- ``volume_approximation_3d`` = area x sqrt(x^2 + y^2 + z^2): area weighted by body position.
- ``color_range`` = \\|L - Lext\\| + \\|A - Aext\\| + \\|B - Bext\\|: L1 colour distance to skin.
- ``shape_color_consistency`` = eccentricity x color_std_mean: elongated and multicoloured.
- ``border_length_ratio`` = perimeter / (2 pi sqrt(area / pi)): outline vs a circle of equal
  area (= 2nd place's shape_irregularity).
- ``age_size_symmetry_index`` = age x diameter x symm_2axis: old, large and asymmetric.
- ``index_age_size_symmetry`` = age x area x symm_2axis: the same with area.

2nd place additions (``position_norm_3d``, ``lab_chroma`` = C, ``lab_hue`` = H in
radians and ``color_difference_total`` duplicate columns above and are not repeated):

- ``asymmetry_ratio`` = symm_2axis / perimeter: asymmetry per mm of outline.
- ``asymmetry_area_ratio`` = symm_2axis / area: asymmetry per mm^2.
- ``color_variation_intensity`` = norm_color x deltaLBnorm: colour variation times contrast.
- ``color_contrast_ratio`` = deltaLBnorm / L: contrast relative to lesion lightness.
- ``border_density`` = norm_border / perimeter: border irregularity per mm of outline.
- ``area_diameter_ratio`` = area / diameter^2: how much of the bounding square is filled.
- ``position_angle_3d_xz`` = atan2(z, x): front/back angle on the body model.
- ``texture_contrast`` = stdL / L: lightness texture relative to lightness.
- ``texture_uniformity`` = 1 / (1 + color_std_mean): high for evenly coloured lesions.
- ``color_difference_AB`` = sqrt(dA^2 + dB^2): chromatic contrast without lightness.

10th place additions:

- ``area_age_ratio`` = area / age: area relative to age.
- ``symmetry_eccentricity_interaction`` = symm_2axis x eccentricity: asymmetric and elongated.
- ``border_complexity_normalized`` = norm_border / sqrt(area): border irregularity per mm.
- ``color_variation_index`` = color_std_mean x radial_color_std_max: joint colour irregularity.
- ``lesion_flatness`` = sqrt(x^2 + y^2) / z: ratio of in-plane distance to depth.
- ``relative_hue_difference`` = \\|H - Hext\\| / (H + Hext): hue contrast relative to mean hue.
- ``color_geometric_mean`` = cbrt(L x A x B): geometric mean of the Lab channels.
- ``norm_color_per_log_size`` = norm_color / ln(1 + diameter): colour variation per log size.
- ``norm_L`` = (stdL + color_std_mean) / L: texture relative to lightness.
- ``norm_A`` = (stdL + color_std_mean) / \\|A\\|: texture relative to redness.
- ``norm_B`` = (stdL + color_std_mean) / \\|B\\|: texture relative to yellowness.
- ``area_ratio`` = (pi/4) diameter^2 / area: circle on the longest diameter vs actual area.
- ``weighted_area_ratio`` = ln(1 + area_ratio x area): that circle's area on a log scale.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils._set_output import _get_output_config
from sklearn.utils.validation import check_is_fitted

from ._errors import DataWarning, ModelFileError, SchemaError
from ._features_derived import DERIVED_FEATURES, OUTLIER_COLUMNS
from ._features_plan import build_plan, output_names
from ._frame import to_polars
from .schema import CATEGORICAL_COLUMNS, LEAK_COLUMNS, NUMERIC_COLUMNS

__all__ = ["LesionFeaturizer", "GROUPS", "OUTLIER_COLUMNS", "DERIVED_NAMES"]

logger = logging.getLogger(__name__)

#: The feature groups, in output order.
GROUPS: tuple[str, ...] = ("derived", "patient", "region", "outlier", "counts")

#: Names of the derived attributes, in output order.
DERIVED_NAMES: tuple[str, ...] = tuple(d.name for d in DERIVED_FEATURES)

_FORMAT = "lesionboost.LesionFeaturizer"
_FORMAT_VERSION = 1
_RANK_CHOICES = ("all", "raw", "key", "none")


#: Largest magnitude accepted in a numeric input: far beyond every SLICE-3D
#: measurement, and small enough that the derived products stay within Float32.
_MAX_MAGNITUDE = 1e15


def _user_stacklevel() -> int:
    """Stack level of the first frame outside lesionboost and scikit-learn.

    ``transform`` is wrapped by scikit-learn's ``set_output`` machinery, so a
    fixed ``stacklevel`` would point warnings at scikit-learn instead of the
    caller's line.
    """
    frame = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith(
        ("lesionboost.", "sklearn.")
    ):
        frame = frame.f_back
        level += 1
    return level


def _preview(values: Sequence[object], limit: int = 5) -> str:
    shown = ", ".join(repr(v) for v in list(values)[:limit])
    return shown + (", ..." if len(values) > limit else "")


class LesionFeaturizer(TransformerMixin, BaseEstimator):
    """Derived and patient-relative features of SLICE-3D lesions, as one polars plan.

    Parameters
    ----------
    groups : sequence of str, default=("derived", "patient", "region", "outlier", "counts")
        Feature groups to produce (see the module documentation); the raw numeric
        columns and the categorical codes are always produced.
    eps : float, default=1e-5
        Added to the within-group standard deviation of the z-scores.
    z_threshold : float, default=2.0
        ``|z|`` above which a column counts towards ``ud_count_abs_z_gt``.
    rank_columns : {"all", "raw", "key", "none"}, default="none"
        Which columns get percentile ranks in the ``"patient"`` and ``"region"``
        groups: every numeric column (raw and derived), the raw columns, the 16
        key columns of the outlier score (:data:`OUTLIER_COLUMNS`), or none;
        ``extra_numeric`` columns are ranked unless "none". Ranks cost a sort per
        column and group, several times a z-score.
    extra_numeric : sequence of str, default=()
        Additional numeric columns of ``X`` (e.g. image-model scores) treated like
        the raw measurements: passed through and given patient-relative features.

    Attributes
    ----------
    feature_names_in_ : numpy.ndarray of str
        Columns of ``X`` seen at fit, as scikit-learn records them (train-only
        columns included; they are dropped, with a warning, before any feature).
    n_features_in_ : int
        Number of columns of ``X`` seen at fit.
    feature_names_out_ : list of str
        Output columns, in order.
    categorical_features_ : list of str
        Output columns holding categorical codes (Int32).
    category_maps_ : dict of str to list of str
        Levels seen at fit for each categorical column; level ``i`` has code ``i + 2``.

    Examples
    --------
    >>> import lesionboost as lb
    >>> X, y = lb.split_xy(lb.simulate_slice3d(5, seed=0).train)
    >>> featurizer = LesionFeaturizer().fit(X)
    >>> features = featurizer.transform(X)
    >>> features.height == X.height, features.width
    (True, 411)
    >>> features["clin_size_long_diam_mm__z_patient"].dtype
    Float32
    >>> featurizer.category_maps_["sex"]
    ['female', 'male']
    >>> state = featurizer.to_dict()  # JSON-serialisable, no pickle
    >>> LesionFeaturizer.from_dict(state).transform(X).equals(features)
    True
    """

    def __init__(
        self,
        *,
        groups: Sequence[str] = GROUPS,
        eps: float = 1e-5,
        z_threshold: float = 2.0,
        rank_columns: str = "none",
        extra_numeric: Sequence[str] = (),
    ) -> None:
        self.groups = groups
        self.eps = eps
        self.z_threshold = z_threshold
        self.rank_columns = rank_columns
        self.extra_numeric = extra_numeric

    # -- scikit-learn API ------------------------------------------------------------------

    def fit(self, X: Any, y: Any = None) -> LesionFeaturizer:
        """Learn the categorical levels and the output columns.

        Patient statistics are not learned: they are computed at transform time
        over the lesions present then.

        Parameters
        ----------
        X : polars.DataFrame or pandas.DataFrame
            SLICE-3D metadata with ``patient_id``, the 34 raw numeric columns and
            the 6 categorical columns.
        y : ignored
            Accepted for pipeline compatibility.

        Returns
        -------
        self : LesionFeaturizer
        """
        groups, extra = self._checked_params()
        frame = self._input_frame(X, extra, fitting=True)
        self.feature_names_in_ = np.asarray(frame.columns, dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        self.category_maps_ = {
            name: sorted(frame.get_column(name).cast(pl.String).drop_nulls().unique().to_list())
            for name in CATEGORICAL_COLUMNS
        }
        self.categorical_features_ = list(CATEGORICAL_COLUMNS)
        self.feature_names_out_ = output_names(
            groups=groups, extra=extra, rank_columns=self.rank_columns
        )
        logger.debug("LesionFeaturizer fitted: %d output features", len(self.feature_names_out_))
        return self

    def transform(self, X: Any) -> Any:
        """Compute the features of every lesion of ``X``.

        Parameters
        ----------
        X : polars.DataFrame or pandas.DataFrame
            Metadata with the columns seen at fit (extra columns are ignored).

        Returns
        -------
        polars.DataFrame or pandas.DataFrame
            One row per input row, in input order, with :attr:`feature_names_out_`:
            Float32 numeric features and Int32 categorical codes. A pandas frame
            (with the input's index) when ``set_output(transform="pandas")``.
        """
        check_is_fitted(self, "feature_names_out_")
        groups, extra = self._checked_params()
        frame = self._input_frame(X, extra, fitting=False)
        self._warn_unknown_levels(frame)
        plan = build_plan(
            frame,
            groups=groups,
            extra=extra,
            rank_columns=self.rank_columns,
            eps=float(self.eps),
            z_threshold=float(self.z_threshold),
            category_maps=self.category_maps_,
        )
        out = plan.collect()
        if out.columns != self.feature_names_out_:  # a code change must never reorder silently
            raise RuntimeError("LesionFeaturizer produced columns that differ from fit.")
        if _get_output_config("transform", self)["dense"] == "pandas":
            pandas_out = out.to_pandas()
            if type(X).__module__.startswith("pandas"):
                pandas_out.index = X.index
            return pandas_out
        return out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Output feature names (``input_features`` is accepted and ignored)."""
        check_is_fitted(self, "feature_names_out_")
        return np.asarray(self.feature_names_out_, dtype=object)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.categorical = True
        tags.input_tags.string = True
        tags.requires_fit = True
        return tags

    # -- safe persistence ------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The parameters and learned state as a JSON-serialisable dict (no pickle).

        Returns
        -------
        dict
            Pass it to :meth:`from_dict` to rebuild an identical featurizer.
        """
        check_is_fitted(self, "feature_names_out_")
        groups, extra = self._checked_params()  # a bare string is one group, not letters
        state = {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "params": {
                "groups": list(groups),
                "eps": float(self.eps),
                "z_threshold": float(self.z_threshold),
                "rank_columns": self.rank_columns,
                "extra_numeric": list(extra),
            },
            "feature_names_in_": [str(c) for c in self.feature_names_in_],
            "category_maps_": {k: list(v) for k, v in self.category_maps_.items()},
            "feature_names_out_": list(self.feature_names_out_),
        }
        json.dumps(state)  # fail here, not at save time, if something is not JSON
        return state

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> LesionFeaturizer:
        """Rebuild a fitted featurizer from :meth:`to_dict` output.

        Raises
        ------
        ModelFileError
            The dict is not a featurizer state of a supported version, or it was
            written by a version whose feature list differs from this one's.
        """
        if not isinstance(state, dict) or state.get("format") != _FORMAT:
            raise ModelFileError(
                f"Not a LesionFeaturizer state (expected 'format': {_FORMAT!r}). "
                "Pass the dict returned by LesionFeaturizer.to_dict()."
            )
        if state.get("format_version") != _FORMAT_VERSION:
            raise ModelFileError(
                f"LesionFeaturizer state has format_version {state.get('format_version')!r}; "
                f"this lesionboost reads version {_FORMAT_VERSION}. Refit the model."
            )
        try:
            params = dict(state["params"])
            params["groups"] = tuple(params["groups"])
            params["extra_numeric"] = tuple(params["extra_numeric"])
            featurizer = cls(**params)
            featurizer.feature_names_in_ = np.asarray(state["feature_names_in_"], dtype=object)
            featurizer.n_features_in_ = len(featurizer.feature_names_in_)
            featurizer.category_maps_ = {
                str(k): [str(v) for v in levels] for k, levels in state["category_maps_"].items()
            }
            stored = [str(c) for c in state["feature_names_out_"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(
                f"LesionFeaturizer state is incomplete or damaged: {exc!r}."
            ) from exc
        if sorted(featurizer.category_maps_) != sorted(CATEGORICAL_COLUMNS):
            raise ModelFileError(
                "LesionFeaturizer state has category maps for "
                f"{sorted(featurizer.category_maps_)}, expected {sorted(CATEGORICAL_COLUMNS)}."
            )
        try:
            groups, extra = featurizer._checked_params()
        except ValueError as exc:
            raise ModelFileError(f"LesionFeaturizer state has invalid parameters: {exc}") from exc
        expected = output_names(groups=groups, extra=extra, rank_columns=featurizer.rank_columns)
        if expected != stored:
            differing = [a for a, b in zip(expected, stored, strict=False) if a != b]
            raise ModelFileError(
                f"The saved featurizer lists {len(stored)} features but this lesionboost "
                f"produces {len(expected)} for the same parameters (first differences: "
                f"{_preview(differing)}). Refit the model with this version."
            )
        featurizer.categorical_features_ = list(CATEGORICAL_COLUMNS)
        featurizer.feature_names_out_ = stored
        return featurizer

    # -- helpers ---------------------------------------------------------------------------

    def _checked_params(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        groups = (self.groups,) if isinstance(self.groups, str) else tuple(self.groups)
        unknown = [g for g in groups if g not in GROUPS]
        if unknown:
            raise ValueError(
                f"LesionFeaturizer: unknown group(s) {_preview(unknown)}; "
                f"choose from {list(GROUPS)}."
            )
        groups = tuple(g for g in GROUPS if g in groups)  # canonical order, no repeats
        if not (isinstance(self.eps, (int, float)) and math.isfinite(self.eps) and self.eps > 0):
            raise ValueError(f"LesionFeaturizer: eps must be a positive number, got {self.eps!r}.")
        if not (
            isinstance(self.z_threshold, (int, float))
            and math.isfinite(self.z_threshold)
            and self.z_threshold > 0
        ):
            raise ValueError(
                "LesionFeaturizer: z_threshold must be a positive number, "
                f"got {self.z_threshold!r}."
            )
        if self.rank_columns not in _RANK_CHOICES:
            raise ValueError(
                f"LesionFeaturizer: rank_columns must be one of {list(_RANK_CHOICES)}, "
                f"got {self.rank_columns!r}."
            )
        extra_in = (
            (self.extra_numeric,) if isinstance(self.extra_numeric, str) else self.extra_numeric
        )
        extra = tuple(str(c) for c in extra_in)
        clashes = [
            c
            for c in extra
            if c in NUMERIC_COLUMNS
            or c in DERIVED_NAMES
            or c in CATEGORICAL_COLUMNS
            or c in LEAK_COLUMNS
            or c in ("patient_id", "isic_id")
        ]
        if clashes or len(set(extra)) != len(extra):
            raise ValueError(
                "LesionFeaturizer: extra_numeric must name distinct columns that are not raw, "
                "derived, categorical, identifier or leak columns; "
                f"got {_preview(clashes or extra)}."
            )
        if extra:
            # An extra column named like an output of the plan ("outlier_score",
            # "x__z_patient") or an internal temporary ("__key_patient") would
            # collide inside the query: refuse it here with the name, not later.
            generated = set(output_names(groups=GROUPS, extra=(), rank_columns="all"))
            taken = [c for c in extra if c.startswith("__") or c in generated]
            taken += [c for c in extra for other in extra if c.startswith(f"{other}__")]
            if taken:
                raise ValueError(
                    f"LesionFeaturizer: extra_numeric name(s) {_preview(sorted(set(taken)))} "
                    "clash with the featurizer's own output or internal columns; rename them "
                    "(e.g. add a prefix such as 'img_')."
                )
        return groups, extra

    def _input_frame(self, X: Any, extra: tuple[str, ...], *, fitting: bool) -> pl.DataFrame:
        frame = to_polars(X, what="X")
        leaks = [c for c in frame.columns if c in LEAK_COLUMNS]
        if leaks:
            warnings.warn(
                f"Dropped train-only (leak) column(s) {_preview(leaks, 11)} from X: they describe "
                "the diagnosis and are absent at test time, so they never become features. "
                "Use lesionboost.split_xy() to separate them.",
                DataWarning,
                stacklevel=_user_stacklevel(),
            )
        required = ["patient_id", *NUMERIC_COLUMNS, *CATEGORICAL_COLUMNS, *extra]
        missing = [c for c in required if c not in frame.columns]
        if missing:
            verb = "fit" if fitting else "transform"
            raise SchemaError(
                f"LesionFeaturizer.{verb}: X lacks required column(s) {_preview(missing)} "
                f"({len(missing)} of {len(required)}). X needs 'patient_id' (patient-relative "
                "features are computed per patient), the raw numeric and categorical SLICE-3D "
                "columns (lesionboost.schema.TEST_COLUMNS) and any extra_numeric columns."
            )
        if frame.height == 0 and fitting:
            raise SchemaError("LesionFeaturizer.fit: X has no rows; pass at least one lesion.")
        if frame.get_column("patient_id").null_count():
            rows = frame.get_column("patient_id").is_null().arg_true().head(5).to_list()
            raise SchemaError(
                f"LesionFeaturizer: 'patient_id' is empty at row(s) {rows}. Every lesion needs "
                "its patient for the patient-relative features: fill it in or drop those rows."
            )
        not_numeric = [
            c
            for c in (*NUMERIC_COLUMNS, *extra)
            if not (frame.schema[c].is_numeric() or frame.schema[c] == pl.Null)
        ]
        if not_numeric:
            raise SchemaError(
                f"LesionFeaturizer: column(s) {_preview(not_numeric)} must be numeric but are "
                f"{_preview([str(frame.schema[c]) for c in not_numeric])}. Read the metadata "
                "with lesionboost.read_metadata(), which parses and validates the numbers."
            )
        self._check_magnitudes(frame, (*NUMERIC_COLUMNS, *extra))
        return frame

    @staticmethod
    def _check_magnitudes(frame: pl.DataFrame, columns: Sequence[str]) -> None:
        # A finite value beyond any measurement (1e200) would overflow the Float32
        # outputs and turn its whole patient's z-scores into NaN: refuse it by name.
        floats = [c for c in columns if frame.schema[c].is_float()]
        if not floats or frame.height == 0:
            return

        def too_large(x: pl.Expr) -> pl.Expr:
            return x.is_finite() & (x.abs() > _MAX_MAGNITUDE)

        flags = frame.select(too_large(pl.col(c)).any().alias(c) for c in floats).row(0, named=True)
        huge = [c for c, flag in flags.items() if flag]
        if huge:
            column = frame.get_column(huge[0])
            row = int(frame.select(too_large(pl.col(huge[0])).arg_true().first()).item())
            raise SchemaError(
                f"LesionFeaturizer: column(s) {_preview(huge)} hold values beyond "
                f"+-{_MAX_MAGNITUDE:.0e} (first: {huge[0]!r} = {column[row]!r} at row {row}); "
                "no SLICE-3D measurement is that large. Fix the value or set it missing."
            )

    def _warn_unknown_levels(self, frame: pl.DataFrame) -> None:
        probes = []
        for name in CATEGORICAL_COLUMNS:
            text = pl.col(name).cast(pl.String)
            probes.append(
                text.filter(text.is_not_null() & ~text.is_in(self.category_maps_[name]))
                .value_counts(sort=True)
                .implode()
                .alias(name)
            )
        found = frame.select(probes).row(0, named=True)
        for name, counts in found.items():
            if not counts:
                continue
            levels = [c[name] for c in counts]
            rows = sum(int(c["count"]) for c in counts)
            warnings.warn(
                f"Column {name!r} has level(s) not seen at fit: {_preview(levels)} "
                f"({rows} row(s)). They are encoded as the 'unknown' code 1; refit on data "
                "that includes them to give them their own code.",
                DataWarning,
                stacklevel=_user_stacklevel(),
            )
