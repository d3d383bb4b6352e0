"""``LesionFeaturizer``: derived and patient-relative ("ugly duckling") lesion features in polars.

Every feature is a polars expression and the whole transform is one lazy query
plan. The feature groups, their guarantees (no NaN or inf, patient isolation, leak
columns dropped) and the 65 derived attributes are listed in ``docs/features.md``.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import warnings
from collections.abc import Sequence
from types import FrameType
from typing import Any

import numpy as np
import polars as pl
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils._set_output import _get_output_config
from sklearn.utils.validation import check_is_fitted

from .._utils._frame import to_polars
from ..exceptions import DataWarning, ModelFileError, SchemaError
from ..schema import CATEGORICAL_COLUMNS, LEAK_COLUMNS, NUMERIC_COLUMNS
from ._derived import DERIVED_FEATURES, OUTLIER_COLUMNS
from ._plan import build_plan, output_names

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
    frame: FrameType | None = sys._getframe(1)
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
