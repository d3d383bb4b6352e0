"""The public tabular lineage of ISIC 2024, rebuilt from its description as a peer model.

Source: the public "Only Tabular Data" notebook lineage of the Kaggle ISIC 2024
competition (https://www.kaggle.com/competitions/isic-2024-challenge), the
tabular recipe that most public notebooks and many top solutions started from.
This module is written independently from that published description in plain
polars; it does not use lesionboost's featurizer, so a benchmark can compare
lesionboost against the recipe it builds on without sharing code with it.

Features (:func:`lineage_features`), about 200 columns:

- the 34 raw numeric SLICE-3D columns;
- 42 lesion features: size ratio, shape index, hue and luminance contrast, colour
  difference, border complexity, colour uniformity, 3-D position distance,
  perimeter/area ratios, visibility score, symmetry-border consistency (two forms),
  colour consistency (two forms), size-age interaction, hue x colour std, severity
  index, shape complexity, colour contrast index, log area, normalised size, mean
  hue difference, std contrast, colour-shape composite, 3-D orientation, overall
  colour difference, symmetry-perimeter, comprehensive index, colour variance ratio,
  border-colour interactions (two forms), size-colour contrast ratio, age-normalised
  nevus confidence (two forms, the second misnamed in the source), colour asymmetry,
  3-D volume approximation, colour range, shape-colour consistency, border length
  ratio and two age-size-symmetry indices;
- patient normalisation of those 76: ``<col>_norm = (x - patient mean) /
  (patient sample SD + 1e-5)``, null for a patient with one lesion;
- ``count_per_patient``, the lesions per patient (leave it out with
  ``counts=False`` where counts leak the label, as on the positive-enriched real sample);
- one-hot columns of ``sex``, ``anatom_site_general``, ``tbp_tile_type``,
  ``tbp_lv_location``, ``tbp_lv_location_simple`` and ``attribution``, for the
  levels seen at fit (a missing value is a level of its own when seen at fit;
  unseen levels are all zeros, like ``OneHotEncoder(handle_unknown="ignore")``).

As in the source, missing values are left missing (the boosters route them) and
statistics are computed on the frame being transformed, so test patients are
normalised by their own lesions. One deliberate difference: a ratio whose
denominator is 0 becomes missing instead of infinite, because XGBoost rejects
infinite inputs.

Models (:class:`LineageClassifier`):

- ``form="lgbm"``: one LightGBM with the lineage's tuned parameters, bagged over
  seeds; each bag keeps every positive and draws 100 negatives per positive
  (``RandomUnderSampler(sampling_strategy=0.01)``-style); the bags' probabilities
  are averaged;
- ``form="vote"``: the LightGBM + XGBoost + CatBoost soft vote (mean probability)
  of the lineage, every member fitted on the same 1:100 subsample of a bag.

Train-only (leak) columns (:data:`lesionboost.schema.LEAK_COLUMNS`) are dropped
before anything is computed. Usage from another benchmark::

    sys.path.insert(0, "benchmarks")
    from lineage import LineageClassifier
    lb.cross_val_oof(LineageClassifier(), metadata, folds)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
from sklearn.base import BaseEstimator, ClassifierMixin

from lesionboost.schema import LEAK_COLUMNS

__all__ = [
    "RAW_NUMERIC",
    "LESION_FEATURES",
    "CATEGORICALS",
    "NORM_EPS",
    "LGBM_PARAMS",
    "XGB_PARAMS",
    "CATBOOST_PARAMS",
    "lesion_features",
    "lineage_features",
    "LineageClassifier",
]

#: The raw numeric columns of the lineage (all numeric columns of the test file).
RAW_NUMERIC: tuple[str, ...] = (
    "age_approx", "clin_size_long_diam_mm", "tbp_lv_A", "tbp_lv_Aext", "tbp_lv_B",
    "tbp_lv_Bext", "tbp_lv_C", "tbp_lv_Cext", "tbp_lv_H", "tbp_lv_Hext", "tbp_lv_L",
    "tbp_lv_Lext", "tbp_lv_areaMM2", "tbp_lv_area_perim_ratio", "tbp_lv_color_std_mean",
    "tbp_lv_deltaA", "tbp_lv_deltaB", "tbp_lv_deltaL", "tbp_lv_deltaLB", "tbp_lv_deltaLBnorm",
    "tbp_lv_eccentricity", "tbp_lv_minorAxisMM", "tbp_lv_nevi_confidence",
    "tbp_lv_norm_border", "tbp_lv_norm_color", "tbp_lv_perimeterMM",
    "tbp_lv_radial_color_std_max", "tbp_lv_stdL", "tbp_lv_stdLExt", "tbp_lv_symm_2axis",
    "tbp_lv_symm_2axis_angle", "tbp_lv_x", "tbp_lv_y", "tbp_lv_z",
)  # fmt: skip

#: The categorical columns the lineage one-hot encodes.
CATEGORICALS: tuple[str, ...] = (
    "sex",
    "anatom_site_general",
    "tbp_tile_type",
    "tbp_lv_location",
    "tbp_lv_location_simple",
    "attribution",
)

#: Added to the patient SD in the ``_norm`` features.
NORM_EPS = 1e-5

#: LightGBM parameters of the lineage: the notebook's published tuned values (LightGBM
#: names in comments).
LGBM_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "n_estimators": 200,
    "learning_rate": 0.0323,
    "num_leaves": 103,
    "max_depth": 4,
    "reg_alpha": 0.0876,  # lambda_l1
    "reg_lambda": 0.00397,  # lambda_l2
    "colsample_bytree": 0.833,  # feature_fraction
    "feature_fraction_bynode": 0.403,
    "subsample": 0.774,  # bagging_fraction
    "subsample_freq": 4,  # bagging_freq
    "min_child_samples": 85,  # min_data_in_leaf
    "scale_pos_weight": 2.80,
    "verbosity": -1,
}

#: XGBoost parameters of the lineage's soft vote (the notebook's tuned values; its
#: library default of 100 trees).
XGB_PARAMS: dict[str, Any] = {
    "tree_method": "hist",
    "n_estimators": 100,
    "learning_rate": 0.0850,
    "reg_lambda": 8.88,
    "reg_alpha": 0.678,
    "max_depth": 6,
    "subsample": 0.601,
    "colsample_bytree": 0.844,
    "colsample_bylevel": 0.548,
    "colsample_bynode": 0.993,
    "scale_pos_weight": 3.29,
    "verbosity": 0,
}

#: CatBoost parameters of the lineage's soft vote (the notebook's tuned values).
CATBOOST_PARAMS: dict[str, Any] = {
    "iterations": 200,
    "learning_rate": 0.0694,
    "depth": 7,
    "l2_leaf_reg": 6.22,
    "bootstrap_type": "Bernoulli",
    "subsample": 0.625,
    "min_data_in_leaf": 24,
    "scale_pos_weight": 2.61,
    "allow_writing_files": False,
    "verbose": 0,
}

#: The lineage's sampling: positives duplicated to 0.3 % of the negatives
#: (``RandomOverSampler(0.003)``), then 100 negatives kept per positive
#: (``RandomUnderSampler(0.01)``).
OVERSAMPLE_RATIO = 0.003


def _c(name: str) -> pl.Expr:
    return pl.col(name).cast(pl.Float64)


def _lesion_exprs() -> dict[str, pl.Expr]:
    """The 42 lesion features as polars expressions, in the lineage's order."""
    size, minor, area, perim = (
        _c("clin_size_long_diam_mm"), _c("tbp_lv_minorAxisMM"), _c("tbp_lv_areaMM2"),
        _c("tbp_lv_perimeterMM"),
    )  # fmt: skip
    h, hext, lum, lext = _c("tbp_lv_H"), _c("tbp_lv_Hext"), _c("tbp_lv_L"), _c("tbp_lv_Lext")
    a, aext, b, bext = _c("tbp_lv_A"), _c("tbp_lv_Aext"), _c("tbp_lv_B"), _c("tbp_lv_Bext")
    da, db, dl = _c("tbp_lv_deltaA"), _c("tbp_lv_deltaB"), _c("tbp_lv_deltaL")
    dlbn, border = _c("tbp_lv_deltaLBnorm"), _c("tbp_lv_norm_border")
    color, symm = _c("tbp_lv_norm_color"), _c("tbp_lv_symm_2axis")
    ecc, cstd = _c("tbp_lv_eccentricity"), _c("tbp_lv_color_std_mean")
    radial, stdl = _c("tbp_lv_radial_color_std_max"), _c("tbp_lv_stdL")
    stdlext, apr = _c("tbp_lv_stdLExt"), _c("tbp_lv_area_perim_ratio")
    nevi, age = _c("tbp_lv_nevi_confidence"), _c("age_approx")
    x, y, z = _c("tbp_lv_x"), _c("tbp_lv_y"), _c("tbp_lv_z")
    dist3d = (x**2 + y**2 + z**2).sqrt()
    shape_index = area / perim**2
    return {
        "lesion_size_ratio": minor / size,
        "lesion_shape_index": shape_index,
        "hue_contrast": (h - hext).abs(),
        "luminance_contrast": (lum - lext).abs(),
        "lesion_color_difference": (da**2 + db**2 + dl**2).sqrt(),
        "border_complexity": border + symm,
        "color_uniformity": cstd / (radial + 1e-5),
        "position_distance_3d": dist3d,
        "perimeter_to_area_ratio": perim / area,
        "area_to_perimeter_ratio": area / perim,
        "lesion_visibility_score": dlbn + color,
        "symmetry_border_consistency": symm * border,
        "consistency_symmetry_border": symm * border / (symm + border),
        "color_consistency": stdl / lext,
        "consistency_color": stdl * lext / (stdl + lext),
        "size_age_interaction": size * age,
        "hue_color_std_interaction": h * cstd,
        "lesion_severity_index": (border + color + ecc) / 3,
        "shape_complexity_index": border + symm + shape_index,
        "color_contrast_index": da + db + dl + dlbn,
        "log_lesion_area": (area + 1).log(),
        "normalized_lesion_size": size / age,
        "mean_hue_difference": (h + hext) / 2,
        "std_dev_contrast": ((da**2 + db**2 + dl**2) / 3).sqrt(),
        "color_shape_composite_index": (cstd + apr + symm) / 3,
        "lesion_orientation_3d": pl.arctan2(y, x),
        "overall_color_difference": (da + db + dl) / 3,
        "symmetry_perimeter_interaction": symm * perim,
        "comprehensive_lesion_index": (apr + ecc + color + symm) / 4,
        "color_variance_ratio": cstd / stdlext,
        "border_color_interaction": border * color,
        "border_color_interaction_2": border * color / (border + color),
        "size_color_contrast_ratio": size / dlbn,
        "age_normalized_nevi_confidence": nevi / age,
        "age_normalized_nevi_confidence_2": (size**2 + age**2).sqrt(),
        "color_asymmetry_index": radial * symm,
        "volume_approximation_3d": area * dist3d,
        "color_range": (lum - lext).abs() + (a - aext).abs() + (b - bext).abs(),
        "shape_color_consistency": ecc * cstd,
        "border_length_ratio": perim / (2 * np.pi * (area / np.pi).sqrt()),
        "age_size_symmetry_index": age * size * symm,
        "index_age_size_symmetry": age * area * symm,
    }


#: Names of the 42 lesion features, in order.
LESION_FEATURES: tuple[str, ...] = tuple(_lesion_exprs())


def _finite(expr: pl.Expr) -> pl.Expr:
    """``expr`` with NaN and +-inf (a zero denominator) turned into nulls."""
    return pl.when(expr.is_finite()).then(expr).otherwise(None)


def lesion_features(frame: pl.DataFrame) -> pl.DataFrame:
    """The 34 raw numeric columns and the 42 lesion features of each row, as Float64."""
    exprs = [_finite(_c(name)).alias(name) for name in RAW_NUMERIC]
    exprs += [_finite(expr).alias(name) for name, expr in _lesion_exprs().items()]
    return frame.select(exprs)


def lineage_features(
    frame: pl.DataFrame,
    levels: dict[str, list[str | None]],
    *,
    counts: bool = True,
) -> pl.DataFrame:
    """Every lineage feature of ``frame`` (which needs ``patient_id``).

    Parameters
    ----------
    frame : polars.DataFrame
        SLICE-3D metadata; leak columns are ignored (never read).
    levels : dict
        Categorical column -> levels to one-hot (``None`` = the missing level).
    counts : bool, default=True
        Add ``count_per_patient``.
    """
    numeric = lesion_features(frame)
    columns = numeric.columns
    work = numeric.with_columns(frame.get_column("patient_id").alias("__patient"))
    norms = [
        (
            (pl.col(c) - pl.col(c).mean().over("__patient"))
            / (pl.col(c).std().over("__patient") + NORM_EPS)
        ).alias(f"{c}_norm")
        for c in columns
    ]
    extra: list[pl.Expr] = []
    if counts:
        extra.append(pl.len().over("__patient").cast(pl.Float64).alias("count_per_patient"))
    out = work.with_columns(*norms, *extra).drop("__patient")
    onehot = []
    for name, values in levels.items():
        source = pl.col(name).cast(pl.String)
        for value in values:
            test = source.is_null() if value is None else (source == value).fill_null(False)
            label = "missing" if value is None else value
            onehot.append(test.cast(pl.Float64).alias(f"{name}={label}"))
    return pl.concat([out, frame.select(onehot)], how="horizontal") if onehot else out


def _frame(X: Any) -> pl.DataFrame:
    if isinstance(X, pl.DataFrame):
        return X
    if isinstance(X, pl.LazyFrame):
        return X.collect()
    return pl.from_pandas(X)


class LineageClassifier(ClassifierMixin, BaseEstimator):
    """The public tabular lineage's model over raw SLICE-3D metadata (see the module docstring).

    Parameters
    ----------
    form : {"lgbm", "vote"}, default="lgbm"
        ``"lgbm"``: bagged LightGBM; ``"vote"``: LightGBM + XGBoost + CatBoost soft vote.
    n_bags : int, default=3
        Seeds bagged over; each draws its own 1:100 negative subsample.
    random_state : int, default=0
        Seed of the first bag (bag ``i`` uses ``random_state + i``).
    n_jobs : int, optional
        Threads of every booster (``None``: the libraries' defaults, all cores).
    counts : bool, default=True
        Use ``count_per_patient`` (switch off where counts leak the label).
    neg_ratio : float, default=0.01
        Positives per kept negative in each bag (``None``: keep every negative).
    n_estimators : int, optional
        Override the rounds of every booster (small runs); default the lineage's 200.

    Attributes
    ----------
    levels_ : dict
        One-hot levels per categorical column, seen at fit.
    feature_names_ : list of str
    models_ : list of list
        Per bag, the fitted member models.
    classes_ : ndarray of shape (2,)
    """

    def __init__(
        self,
        form: str = "lgbm",
        n_bags: int = 3,
        random_state: int = 0,
        n_jobs: int | None = None,
        counts: bool = True,
        neg_ratio: float | None = 0.01,
        n_estimators: int | None = None,
    ) -> None:
        self.form = form
        self.n_bags = n_bags
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.counts = counts
        self.neg_ratio = neg_ratio
        self.n_estimators = n_estimators

    # ----------------------------------------------------------------- features
    def transform_features(self, X: Any) -> pl.DataFrame:
        """The lineage features of ``X`` (columns :attr:`feature_names_`), after :meth:`fit`."""
        frame = _frame(X)
        frame = frame.drop([c for c in LEAK_COLUMNS if c in frame.columns])
        features = lineage_features(frame, self.levels_, counts=self.counts)
        return features.select(self.feature_names_)

    def _matrix(self, X: Any) -> np.ndarray:
        values = self.transform_features(X).to_numpy().astype(np.float32)
        return values

    # ----------------------------------------------------------------- members
    def _members(self, seed: int) -> list[Any]:
        rounds = {} if self.n_estimators is None else {"n_estimators": int(self.n_estimators)}
        import lightgbm

        threads = {} if self.n_jobs is None else {"n_jobs": self.n_jobs}
        members: list[Any] = [
            lightgbm.LGBMClassifier(**{**LGBM_PARAMS, **rounds, **threads}, random_state=seed)
        ]
        if self.form == "vote":
            import catboost
            import xgboost

            members.append(
                xgboost.XGBClassifier(**{**XGB_PARAMS, **rounds, **threads}, random_state=seed)
            )
            cat_rounds = {} if self.n_estimators is None else {"iterations": self.n_estimators}
            cat_threads = {} if self.n_jobs is None else {"thread_count": self.n_jobs}
            members.append(
                catboost.CatBoostClassifier(
                    **{**CATBOOST_PARAMS, **cat_rounds, **cat_threads}, random_seed=seed
                )
            )
        return members

    def fit(self, X: Any, y: Any = None) -> LineageClassifier:
        """Fit ``n_bags`` undersampled bags on raw metadata ``X`` (labels: ``y`` or ``target``)."""
        if self.form not in ("lgbm", "vote"):
            raise ValueError(f"form must be 'lgbm' or 'vote', got {self.form!r}.")
        if not isinstance(self.n_bags, int) or self.n_bags < 1:
            raise ValueError(f"n_bags must be a positive integer, got {self.n_bags!r}.")
        frame = _frame(X)
        if y is None:
            y = frame.get_column("target").to_numpy()
        labels = np.asarray(y.to_numpy() if isinstance(y, pl.Series) else y).ravel().astype(int)
        if labels.shape[0] != frame.height:
            raise ValueError(f"y has {labels.shape[0]} labels for {frame.height} rows.")
        self.classes_ = np.unique(labels)
        if self.classes_.tolist() != [0, 1]:
            raise ValueError("LineageClassifier needs labels 0 and 1, both present.")
        frame = frame.drop([c for c in LEAK_COLUMNS if c in frame.columns])
        self.levels_ = {}
        for name in CATEGORICALS:
            values = frame.get_column(name).cast(pl.String)
            seen: list[str | None] = sorted(v for v in values.unique().to_list() if v is not None)
            if values.null_count():
                seen.append(None)
            self.levels_[name] = seen
        features = lineage_features(frame, self.levels_, counts=self.counts)
        self.feature_names_ = features.columns
        matrix = features.to_numpy().astype(np.float32)
        positives = np.flatnonzero(labels == 1)
        negatives = np.flatnonzero(labels == 0)
        self.models_: list[list[Any]] = []
        for bag in range(self.n_bags):
            seed = int(self.random_state) + bag
            rows = self._bag_rows(positives, negatives, seed)
            members = self._members(seed)
            for member in members:
                member.fit(matrix[rows], labels[rows])
            self.models_.append(members)
        self.n_features_in_ = len(self.feature_names_)
        return self

    def _bag_rows(self, positives: np.ndarray, negatives: np.ndarray, seed: int) -> np.ndarray:
        """The lineage's sample of one bag: positives over-sampled with replacement to
        :data:`OVERSAMPLE_RATIO` of the negatives (never fewer than once each), then
        ``positives / neg_ratio`` random negatives; sorted."""
        rng = np.random.default_rng(seed)
        target = int(round(OVERSAMPLE_RATIO * negatives.size))
        extra = max(0, target - positives.size)
        pos = np.concatenate([positives, rng.choice(positives, size=extra, replace=True)])
        if self.neg_ratio is None:
            return np.sort(np.concatenate([pos, negatives]))
        keep = min(negatives.size, int(round(pos.size / float(self.neg_ratio))))
        chosen = rng.choice(negatives, size=keep, replace=False)
        return np.sort(np.concatenate([pos, chosen]))

    def predict_proba(self, X: Any) -> np.ndarray:
        """Mean probability over bags and members; shape ``(n_rows, 2)``."""
        matrix = self._matrix(X)
        scores = np.zeros(matrix.shape[0])
        count = 0
        for members in self.models_:
            for member in members:
                scores += np.asarray(member.predict_proba(matrix))[:, 1]
                count += 1
        scores /= count
        return np.column_stack([1.0 - scores, scores])

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[(self.predict_proba(X)[:, 1] >= 0.5).astype(int)]
