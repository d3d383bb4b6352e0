"""``LesionBoostClassifier``: metadata in, malignancy scores out."""

from __future__ import annotations

import logging
import numbers
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from .._utils._frame import to_polars
from ..calibration import ScoreCalibrator
from ..ensemble import MEMBERS, GBDTEnsembleClassifier, member_kind, resolve_threads
from ..exceptions import DataWarning, OptionalDependencyError, SchemaError
from ..schema import CATEGORICAL_COLUMNS, LEAK_COLUMNS, NUMERIC_COLUMNS
from ._followup import (
    FOLLOWUP_COLUMN,
    MIN_FOLLOWED,
    FollowupModel,
    cross_fitted_followup,
    followed_up,
    inner_folds,
)

__all__ = [
    "LesionBoostClassifier",
    "DEFAULT_FEATURE_GROUPS",
    "DEFAULT_LINEAR_PARAMS",
    "DEFAULT_MEMBERS",
    "MEMBER_VIEWS",
    "VIEW_MEMBER_WEIGHT",
    "LINEAR_MEMBER_WEIGHT",
    "default_member_weight",
    "default_member_params",
    "default_weights",
    "FOLLOWUP_COLUMN",
    "MIN_FOLLOWED",
]

logger = logging.getLogger("lesionboost.estimator")

#: Featurizer groups used by default: all but ``"region"``. The region z-scores
#: (patient x body location, patient x site) double the feature count and the
#: fit time for no measured gain in any simulated world nor on the real sample
#: (table ``defaults/candidates`` of ``benchmarks/defaults.py``).
DEFAULT_FEATURE_GROUPS: tuple[str, ...] = ("derived", "patient", "outlier", "counts")

#: Ensemble members used by default: LightGBM and CatBoost on every feature, a
#: LightGBM that sees only the raw metadata columns (view ``"raw"``) and a linear
#: member. The raw-column LightGBM is a hedge: where the risk sits in the raw columns
#: and the patient-context features mostly add noise, its rank pulls the blend towards
#: raw-column LightGBM; where the context matters it is outvoted. The linear member (an
#: L1 logistic regression on the quantile-normalised features, with rules) learns a risk
#: that sums many smooth effects from few positives, which the trees learn only in
#: coarse steps. XGBoost is left out: its fit time buys the linear member's rules
#: (table ``defaults/candidates`` of ``benchmarks/defaults.py``).
DEFAULT_MEMBERS: tuple[str, ...] = ("lightgbm", "catboost", "lightgbm:raw", "linear")

#: What ``linear_params=None`` stands for (over the linear member's own defaults):
#: 50 rules, the leaves of 50 depth-3 LightGBM trees as penalised indicator columns
#: (RuleFit), so the linear member also learns thresholded interactions. The trees
#: split on the raw metadata columns only (view ``"raw"``): the rules are conjunctions
#: of the lesion's own measurements and site, and the patient context enters through
#: the regression's terms. The penalty is L1 (``l1_ratio`` 1, RuleFit's lasso): most
#: coefficients, rules' included, are exactly 0, so the few columns and rules that carry
#: the risk keep their weight.
#: Each rule's indicator is 0.45 (``rule_scale``), so its penalty is 1/0.45, about 2.2
#: times a normal score's (3.3 times at the member's own 0.3): strong thresholded
#: interactions keep more of their weight. Every column outside the raw ones (the
#: derived and patient-relative features) enters at half its normal score
#: (``context_scale`` 0.5, ``own_view`` ``"raw"``), so its penalty is twice a raw
#: column's: an effect stays in the lesion's own measurements unless the patient context
#: explains the labels clearly better (table ``defaults/candidates`` of
#: ``benchmarks/defaults.py``).
DEFAULT_LINEAR_PARAMS: dict[str, Any] = {
    "rules": 50,
    "rule_view": "raw",
    "rule_scale": 0.45,
    "context_scale": 0.5,
    "own_view": "raw",
    "l1_ratio": 1.0,
}

#: Blend weight of a member on a view (``"lightgbm:raw"``) when ``weights`` is None;
#: every booster on all features weighs 1.
VIEW_MEMBER_WEIGHT = 2.0

#: Blend weight of the ``"linear"`` member on all features when ``weights`` is None: with
#: the default members, 5/9 of the blend (``benchmarks/defaults.py``).
LINEAR_MEMBER_WEIGHT = 5.0

#: The column subsets (views) a member ``"library:view"`` can be trained on:
#: ``"raw"`` is the SLICE-3D metadata columns as read, without derived,
#: patient-relative or image features. A model with the follow-up score
#: (:data:`FOLLOWUP_COLUMN`) adds it to every view: it is a lesion's own column.
MEMBER_VIEWS: dict[str, tuple[str, ...]] = {"raw": (*NUMERIC_COLUMNS, *CATEGORICAL_COLUMNS)}

# LesionBoostClassifier parameters forwarded unchanged to GBDTEnsembleClassifier.
_ENSEMBLE_PARAMS = (
    "members",
    "lightgbm_params",
    "xgboost_params",
    "catboost_params",
    "linear_params",
    "neg_ratio",
    "pos_oversample",
    "n_bags",
    "blend",
    "weights",
    "device",
    "n_jobs",
    "random_state",
)


def _frame_and_labels(X: Any, y: Any, *, what: str) -> tuple[pl.DataFrame, np.ndarray]:
    frame = to_polars(X, what="X")
    if y is None:
        if "target" not in frame.columns:
            raise SchemaError(
                f"{what} needs labels: pass y, or metadata with a 'target' column "
                "(train-metadata.csv)."
            )
        labels = frame.get_column("target").to_numpy()
    else:
        labels = np.asarray(y.to_numpy() if isinstance(y, pl.Series) else y).ravel()
        if labels.shape[0] != frame.height:
            raise ValueError(
                f"{what}: y has {labels.shape[0]} labels but X has {frame.height} rows; "
                "pass one label per lesion."
            )
    missing = (labels.dtype.kind == "f" and bool(np.isnan(labels).any())) or (
        labels.dtype == object and any(v is None for v in labels)
    )
    if missing:
        raise ValueError(f"{what}: y holds missing labels; every lesion needs 0 or 1.")
    values = np.unique(labels)
    unexpected = [v for v in values.tolist() if v not in (0, 1)]
    if unexpected:
        raise ValueError(
            f"{what}: y must hold 0 (benign) or 1 (malignant), got {unexpected[:5]}. "
            "Map the labels to 0/1 first (the Kaggle 'target' column already is)."
        )
    if values.size < 2:
        kind = "malignant (1)" if values.size and values[0] == 0 else "benign (0)"
        raise ValueError(
            f"{what}: y has no {kind} lesion; training needs both benign and malignant "
            "lesions. Add patients with the missing class."
        )
    return frame, labels


def _int_seed(random_state: Any) -> int:
    """An integer seed for ``random_state`` (0 unless it is an integer)."""
    return int(random_state) if isinstance(random_state, numbers.Integral) else 0


def _check_no_followup_column(frame: pl.DataFrame, column: str = FOLLOWUP_COLUMN) -> None:
    if column in frame.columns:
        raise SchemaError(
            f"X has a column {column!r}, the name of the follow-up score this model "
            "computes; rename or drop it, or fit with followup=False."
        )


def _without_leaks(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.drop([c for c in LEAK_COLUMNS if c in frame.columns])


def _top_rows_per_patient(frame: pl.DataFrame, score: np.ndarray, k: int) -> np.ndarray:
    """Positions of each patient's ``k`` highest-scoring rows (ties: smaller ``isic_id``,
    then the earlier row), in input order."""
    keys: dict[str, Any] = {"patient": frame.get_column("patient_id"), "score": score}
    if "isic_id" in frame.columns:
        keys["id"] = frame.get_column("isic_id")
    keys["row"] = np.arange(frame.height)
    ranked = pl.DataFrame(keys).sort(list(keys), descending=[key == "score" for key in keys])
    chosen = ranked.filter(pl.int_range(pl.len()).over("patient") < k).get_column("row")
    return np.sort(chosen.to_numpy())


def default_member_weight(member: str) -> float:
    """A member's weight in the default blend (``weights=None``), before normalisation.

    :data:`VIEW_MEMBER_WEIGHT` for a member on a view, :data:`LINEAR_MEMBER_WEIGHT`
    for the linear member on all features, 1 for a booster on all features.

    Examples
    --------
    >>> default_member_weight("lightgbm"), default_member_weight("lightgbm:raw")
    (1.0, 2.0)
    """
    if ":" in member:
        return VIEW_MEMBER_WEIGHT
    return LINEAR_MEMBER_WEIGHT if member_kind(member) == "linear" else 1.0


def default_member_params(kind: str) -> dict[str, Any]:
    """The parameters ``{kind}_params=None`` stands for: the member library's defaults,
    and for the linear member :data:`DEFAULT_LINEAR_PARAMS` over them.

    Examples
    --------
    >>> default_member_params("linear")["rules"]
    50
    >>> default_member_params("lightgbm")["n_estimators"]
    200
    """
    from ..ensemble import MEMBERS

    extra = DEFAULT_LINEAR_PARAMS if kind == "linear" else {}
    return {**MEMBERS[kind].defaults, **extra}


def default_weights(members: Sequence[str] | str) -> dict[str, float] | None:
    """The blend weights ``weights=None`` stands for with these ``members``.

    :func:`default_member_weight` of each member; ``None`` (equal weights) when
    every member is a booster on all features.

    Examples
    --------
    >>> default_weights(("lightgbm", "xgboost", "catboost", "lightgbm:raw"))["lightgbm:raw"]
    2.0
    >>> default_weights(("lightgbm", "xgboost")) is None
    True
    """
    members = [members] if isinstance(members, str) else list(members)
    weights = {str(m): default_member_weight(str(m)) for m in members}
    if all(w == 1.0 for w in weights.values()):
        return None
    return weights


class LesionBoostClassifier(ClassifierMixin, BaseEstimator):
    """Skin-lesion malignancy classifier over raw SLICE-3D metadata.

    ``LesionFeaturizer`` -> (image features) -> ``GBDTEnsembleClassifier``.
    Train-only (leak) columns in ``X`` are dropped before featurisation.

    Parameters
    ----------
    feature_groups : sequence of str, default=("derived", "patient", "outlier", "counts")
        Featurizer groups: ``"derived"``, ``"patient"``, ``"region"``,
        ``"outlier"``, ``"counts"`` (see :mod:`lesionboost.features`); the
        default leaves out ``"region"``, which measured no gain for twice the
        features (:data:`DEFAULT_FEATURE_GROUPS`).
    rank_columns : {"all", "raw", "key", "none"}, default="none"
        Columns given within-patient (and, with ``"region"``, within patient x
        location and patient x site) percentile ranks; see
        :class:`~lesionboost.features.LesionFeaturizer`.
    members : sequence of str, default=("lightgbm", "catboost", "lightgbm:raw", "linear")
        Ensemble members (see :class:`~lesionboost.ensemble.GBDTEnsembleClassifier`):
        a library on every feature, or ``"library:raw"``, that library on the raw
        metadata columns only (:data:`MEMBER_VIEWS`). The default adds a raw-column
        LightGBM and a linear member to LightGBM and CatBoost
        (:data:`DEFAULT_MEMBERS`).
    weights : dict or sequence of float, optional
        Blend weight per member, as for
        :class:`~lesionboost.ensemble.GBDTEnsembleClassifier`. ``None``:
        :func:`default_member_weight` of each member -- 1 for a booster on all
        features, :data:`VIEW_MEMBER_WEIGHT` for a member on a view and
        :data:`LINEAR_MEMBER_WEIGHT` for the linear member (so the default blend
        gives ``"lightgbm:raw"`` 2/9 and ``"linear"`` 5/9).
    linear_params : dict, optional
        The linear member's parameters, as for
        :class:`~lesionboost.ensemble.GBDTEnsembleClassifier`. ``None``:
        :data:`DEFAULT_LINEAR_PARAMS` (50 rules on the raw columns, indicator
        value 0.45, the other columns at half scale against the raw ones, an L1
        penalty); a dict replaces it, over the member's own defaults (no rules
        unless it sets ``rules``; rules on every feature unless it sets
        ``rule_view``, e.g. ``"raw"``: the raw metadata columns,
        :data:`MEMBER_VIEWS`; no context penalty unless it sets ``context_scale``
        and ``own_view``; an L2 penalty unless it sets ``l1_ratio``).
    lightgbm_params, xgboost_params, catboost_params, neg_ratio, \
pos_oversample, n_bags, blend, device, n_jobs, random_state
        Passed to :class:`~lesionboost.ensemble.GBDTEnsembleClassifier` (same
        meaning and defaults).
    image_model : str, path or embedder, optional
        ONNX image model for image features (``None`` with ``images`` set: the
        built-in label-free embedder), a ``lesionboost embed`` Parquet table of
        precomputed embeddings (new crops are then embedded with the model that
        made the table), or a :func:`~lesionboost.image.train_embedder` folder
        (see :func:`~lesionboost.image.image_feature_frame`). Needs
        :mod:`lesionboost.image`. :func:`~lesionboost.persist.save_model`
        copies the models into the model folder.
    images : str, path or ImageStore, optional
        HDF5 crops keyed by ``isic_id``; when set, image features join the
        tabular ones by ``isic_id``, so every ``isic_id`` of ``X`` must then be
        unique (a repeated one raises :class:`~lesionboost.exceptions.SchemaError`).
    followup : {"auto", True, False}, default="auto"
        Add the follow-up score (:data:`FOLLOWUP_COLUMN`): the log-odds that
        clinics follow a benign lesion up, learned at fit from which training
        lesions carry a ``lesion_id`` (or from ``followed_up`` passed to
        :meth:`fit`); it is one of the lesion's own columns (view ``"raw"``) and
        gets patient-relative features. Training lesions are scored by models fitted
        on other patients only; ``lesion_id`` itself never becomes a feature.
        ``"auto"``: when the training data say which lesions were followed up, with
        at least :data:`MIN_FOLLOWED` benign lesions of each kind; ``True``: always
        (an error otherwise); ``False``: never. Fit on the training frame itself
        (``fit(train)``): ``X`` from :func:`~lesionboost.split_xy` has no
        ``lesion_id``, so ``"auto"`` then goes without the score unless
        ``followed_up`` is passed.
    followup_offset : bool, default=False
        With the follow-up score, also train the boosters from its logistic fit:
        the score is the ensemble's ``offset_column``, a starting margin the trees
        correct rather than an effect they must rebuild from splits.

    Attributes
    ----------
    featurizer_ : LesionFeaturizer
    ensemble_ : GBDTEnsembleClassifier
    classes_ : ndarray of shape (2,)
    n_features_in_ : int
        Columns of ``X`` seen at fit (leak columns excluded).
    feature_names_in_ : ndarray of str
    image_state_ : dict or None
        The fitted image features' state (embedder, its precision, the feature
        columns); None without ``images``.
    calibrator_ : dict or None
        The calibrator set by :meth:`calibrate` (JSON-ready); None until then, and
        again after a refit.
    followup_ : FollowupModel or None
        The fitted follow-up model; None when the model has no follow-up score.

    Examples
    --------
    >>> import lesionboost as lb
    >>> X, y = lb.split_xy(lb.simulate_slice3d(30, seed=0).train)
    >>> model = LesionBoostClassifier(members=("lightgbm",), n_bags=1,
    ...                               lightgbm_params={"n_estimators": 20})
    >>> model = model.fit(X, y)
    >>> proba = model.predict_proba(X)
    >>> proba.shape == (X.height, 2) and bool(((proba >= 0) & (proba <= 1)).all())
    True
    >>> model.explain(X.head(3), top_k=3).columns[-2:]
    ['top_features', 'top_contributions']
    """

    image_state_: dict[str, Any] | None
    followup_: FollowupModel | None

    def __init__(
        self,
        *,
        feature_groups: Sequence[str] = DEFAULT_FEATURE_GROUPS,
        rank_columns: str = "none",
        members: Sequence[str] = DEFAULT_MEMBERS,
        lightgbm_params: Mapping[str, Any] | None = None,
        xgboost_params: Mapping[str, Any] | None = None,
        catboost_params: Mapping[str, Any] | None = None,
        linear_params: Mapping[str, Any] | None = None,
        neg_ratio: float | None = 0.01,
        pos_oversample: float = 1.0,
        n_bags: int = 2,
        blend: str = "rank",
        weights: Mapping[str, float] | Sequence[float] | None = None,
        device: str = "cpu",
        n_jobs: int | None = None,
        random_state: int | np.random.RandomState | None = 0,
        image_model: Any = None,
        images: Any = None,
        followup: bool | str = "auto",
        followup_offset: bool = False,
    ) -> None:
        self.feature_groups = feature_groups
        self.rank_columns = rank_columns
        self.members = members
        self.lightgbm_params = lightgbm_params
        self.xgboost_params = xgboost_params
        self.catboost_params = catboost_params
        self.linear_params = linear_params
        self.neg_ratio = neg_ratio
        self.pos_oversample = pos_oversample
        self.n_bags = n_bags
        self.blend = blend
        self.weights = weights
        self.device = device
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.image_model = image_model
        self.images = images
        self.followup = followup
        self.followup_offset = followup_offset

    def __sklearn_tags__(self):  # type: ignore[no-untyped-def]
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.categorical = True
        tags.input_tags.string = True
        tags.classifier_tags.multi_class = False
        return tags

    # ------------------------------------------------------------------ follow-up
    def _checked_followup(
        self, frame: pl.DataFrame, labels: np.ndarray, followed: Any
    ) -> np.ndarray | None:
        """Which lesions were followed up when the model gets the follow-up score, else
        None; every error before any work."""
        setting = self.followup
        if not (setting == "auto" or setting is True or setting is False):
            raise ValueError(f"followup must be 'auto', True or False, got {setting!r}.")
        if not isinstance(self.followup_offset, (bool, np.bool_)):
            raise ValueError(
                f"followup_offset must be True or False, got {self.followup_offset!r}."
            )
        if setting is False:
            return None
        mask = followed_up(frame, followed, what=f"{type(self).__name__}.fit")
        if mask is None:
            if setting is True:
                raise SchemaError(
                    "followup=True needs to know which lesions clinics followed up: pass X "
                    "with its lesion_id column, or followed_up=train['lesion_id'].is_not_null()."
                )
            return None
        _check_no_followup_column(frame)
        benign = labels == 0
        counts = int((mask & benign).sum()), int((~mask & benign).sum())
        if min(counts) < MIN_FOLLOWED:
            if setting is True:
                raise ValueError(
                    f"followup=True needs at least {MIN_FOLLOWED} followed-up benign lesions and "
                    f"as many others; X has {counts[0]} and {counts[1]}. Pass followup='auto' "
                    "or False."
                )
            warnings.warn(
                f"{type(self).__name__}(followup='auto') goes without the follow-up score: X has "
                f"{counts[0]} followed-up benign lesions and {counts[1]} others (it needs "
                f"{MIN_FOLLOWED} of each).",
                DataWarning,
                stacklevel=3,
            )
            return None
        return mask

    def _followup_folds(
        self, frame: pl.DataFrame, labels: np.ndarray, followed: np.ndarray, seed: int
    ) -> np.ndarray | None:
        """The inner patient folds of the follow-up score, or None (``"auto"``, with a
        warning) when they leave a fold without both kinds of benign lesion to fit on."""
        try:
            return inner_folds(frame, labels, followed, seed=seed)
        except ValueError as exc:
            if self.followup is True:
                raise
            warnings.warn(
                f"{type(self).__name__}(followup='auto') goes without the follow-up score: {exc}",
                DataWarning,
                stacklevel=3,
            )
            return None

    # ------------------------------------------------------------------ images
    def _with_image_features(
        self, frame: pl.DataFrame, *, fit: bool
    ) -> tuple[pl.DataFrame, tuple[str, ...]]:
        """Join image features onto ``frame`` when ``images`` is set.

        Image features are joined by ``isic_id``, so with ``images`` set every
        ``isic_id`` must be present and unique: that is checked first, before
        any crop is read (a repeated id would add rows and misalign the scores).
        Without images the rows are never joined and keep their positions.
        """
        if self.images is None:
            if self.image_model is not None:
                raise ValueError(
                    "image_model is set but images is None; pass images=<HDF5 file or "
                    "ImageStore> holding the crops of the lesions in X."
                )
            return frame, ()
        from .. import image as image_module

        build = getattr(image_module, "image_feature_frame", None)
        if build is None:
            raise OptionalDependencyError(
                "LesionBoostClassifier(images=...) needs lesionboost.image.image_feature_frame, "
                "which this installation of lesionboost does not provide. Fit without images=, "
                "or add image features as columns yourself."
            )
        from ..image._features import check_unique_ids

        check_unique_ids(
            frame, what=f"{type(self).__name__}." + ("fit" if fit else "predict/explain")
        )
        # image_feature_frame resolves paths itself: an HDF5 path or ImageStore, and an
        # .onnx path, OnnxEmbedder, train_embedder() folder or None (built-in embedder).
        features, state = build(
            frame,
            self.images,
            embedder=self.image_model,
            fitted_state=None if fit else self.image_state_,
        )
        if fit:
            self.image_state_ = state
        names = tuple(c for c in features.columns if c != "isic_id")
        joined = frame.join(features, on="isic_id", how="left", maintain_order="left")
        return joined, names

    # ------------------------------------------------------------------ fit / predict
    def _ensemble_params(self) -> dict[str, Any]:
        params = {name: getattr(self, name) for name in _ENSEMBLE_PARAMS}
        if params["weights"] is None:
            params["weights"] = default_weights(params["members"])
        if params["linear_params"] is None:
            params["linear_params"] = dict(DEFAULT_LINEAR_PARAMS)
        return params

    def fit(
        self, X: Any, y: Any = None, sample_weight: Any = None, followed_up: Any = None
    ) -> LesionBoostClassifier:
        """Fit the featurizer and the ensemble on SLICE-3D training metadata.

        Parameters
        ----------
        X : polars.DataFrame or pandas.DataFrame
            One row per lesion with ``patient_id`` and the SLICE-3D columns; leak
            columns (``target``, ``iddx_*``, ...) are dropped.
        y : array-like of shape (n_samples,), optional
            0/1 labels; defaults to ``X["target"]``.
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative row weights for the ensemble (see
            :meth:`~lesionboost.ensemble.GBDTEnsembleClassifier.fit`); the features
            never depend on them.
            For example, compute them from a train-only column such as ``lesion_id``
            before it is dropped.
        followed_up : array-like of bool of shape (n_samples,), optional
            Which lesions clinics followed up, for the follow-up score (``followup``);
            defaults to ``X["lesion_id"]`` being set when ``X`` has that column
            (:func:`~lesionboost.split_xy` drops it: pass
            ``train["lesion_id"].is_not_null()`` then).

        Returns
        -------
        self : LesionBoostClassifier
        """
        frame, labels = _frame_and_labels(X, y, what="LesionBoostClassifier.fit")
        if sample_weight is not None and np.ndim(sample_weight) == 1:
            if len(sample_weight) != frame.height:
                raise ValueError(
                    f"sample_weight has {len(sample_weight)} entries but X has {frame.height} "
                    "rows; pass one weight per lesion."
                )
        linear = self._ensemble_params()["linear_params"]
        members = self._ensemble_params()["members"] or ()
        if isinstance(linear, Mapping) and any(member_kind(m) == "linear" for m in members):
            MEMBERS["linear"].params(linear, device="cpu", n_jobs=None)  # errors before any work
        for key, otherwise in (
            ("rule_view", "rules on every feature"),
            ("own_view", "no context penalty"),
        ):
            view = linear.get(key) if isinstance(linear, Mapping) else None
            if view is not None and view not in MEMBER_VIEWS:  # before any featurising
                raise ValueError(
                    f"linear_params[{key!r}] = {view!r} is not a view; choose one of "
                    f"{sorted(MEMBER_VIEWS)} or leave it out ({otherwise})."
                )
        followed = self._checked_followup(frame, labels, followed_up)
        frame = _without_leaks(frame)
        frame, image_columns = self._with_image_features(frame, fit=True)
        inputs = [c for c in frame.columns if c not in image_columns]
        from ..features import LesionFeaturizer

        followup: FollowupModel | None = None
        folds: np.ndarray | None = None
        extra = image_columns
        seed = _int_seed(self.random_state)
        if followed is not None:
            # the metadata's own errors first, then the follow-up score's
            LesionFeaturizer(extra_numeric=image_columns)._input_frame(
                frame, image_columns, fitting=True
            )
            folds = self._followup_folds(frame, labels, followed, seed)
            if folds is None:
                followed = None
        if followed is not None:
            followup, scores = cross_fitted_followup(
                frame,
                labels,
                followed,
                seed=seed,
                threads=resolve_threads(self.n_jobs),
                folds=folds,
            )
            frame = frame.with_columns(pl.Series(followup.column, scores))
            extra = (*image_columns, followup.column)

        self.calibrator_: dict[str, Any] | None = None  # a refit drops an old calibration
        self.followup_ = followup
        self.featurizer_ = LesionFeaturizer(
            groups=self.feature_groups,
            rank_columns=self.rank_columns,
            extra_numeric=extra,
        ).fit(frame)
        features = self.featurizer_.transform(frame)
        own = () if followup is None else (followup.column,)
        views = {
            name: [c for c in (*columns, *own) if c in features.columns]
            for name, columns in MEMBER_VIEWS.items()
        }
        offset = followup.column if followup is not None and self.followup_offset else None
        self.ensemble_ = GBDTEnsembleClassifier(
            **self._ensemble_params(),
            offset_column=offset,
            views=views,
            categorical_features=list(self.featurizer_.categorical_features_),
        ).fit(features, labels, sample_weight=sample_weight)
        self.classes_ = self.ensemble_.classes_
        self.feature_names_in_ = np.asarray(inputs, dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        logger.debug(
            "LesionBoostClassifier fitted on %d lesions, %d features",
            frame.height,
            features.width,
        )
        return self

    def transform_features(self, X: Any) -> pl.DataFrame:
        """The feature frame the ensemble sees for ``X`` (for inspection and reports)."""
        check_is_fitted(self, "ensemble_")
        frame = _without_leaks(to_polars(X, what="X"))
        frame, _ = self._with_image_features(frame, fit=False)
        followup = getattr(self, "followup_", None)
        if followup is not None:
            _check_no_followup_column(frame, followup.column)
            scores = followup.score(frame, resolve_threads(self.n_jobs))
            frame = frame.with_columns(pl.Series(followup.column, scores))
        return self.featurizer_.transform(frame)

    def decision_function(self, X: Any) -> np.ndarray:
        """Blended log-odds of malignancy for each lesion of ``X``."""
        return self.ensemble_.decision_function(self.transform_features(X))

    def predict_proba(self, X: Any) -> np.ndarray:
        """Probability of benign (column 0) and malignant (column 1) for each lesion.

        Parameters
        ----------
        X : polars.DataFrame or pandas.DataFrame
            Metadata of whole patients (patient-relative features use every lesion
            of a patient present in ``X``).

        Returns
        -------
        ndarray of shape (n_samples, 2)
            With a calibrator (:meth:`calibrate`), column 1 is the calibrated risk.
        """
        return self._proba(self.transform_features(X))

    def _proba(self, features: pl.DataFrame) -> np.ndarray:
        """:meth:`predict_proba` of the feature frame ``features``."""
        proba = self.ensemble_.predict_proba(features)
        calibrator = getattr(self, "calibrator_", None)
        if calibrator is None:
            return proba
        risk = ScoreCalibrator.from_dict(calibrator).transform(proba[:, 1])
        return np.column_stack([1.0 - risk, risk])

    def calibrate(self, y_true: Any, oof_scores: Any) -> LesionBoostClassifier:
        """Map this model's probabilities to the population's risk (a fitted calibrator).

        Fits a :class:`~lesionboost.calibration.ScoreCalibrator` on out-of-fold
        scores of this configuration (e.g. ``cross_val_oof(...).oof``: each lesion
        scored by a model that never saw its patient) and keeps it, so that
        :meth:`predict_proba` returns calibrated probabilities; ``save_model``
        stores it as JSON. The order of the scores, and so every rank metric, is
        unchanged.

        Parameters
        ----------
        y_true : array-like of shape (n_samples,)
            Labels of the out-of-fold lesions.
        oof_scores : array-like of shape (n_samples,)
            Their out-of-fold probabilities (uncalibrated).

        Returns
        -------
        self : LesionBoostClassifier
        """
        check_is_fitted(self, "ensemble_")
        self.calibrator_ = ScoreCalibrator.fit(y_true, oof_scores).to_dict()
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predicted label: malignant when :meth:`predict_proba`'s column 1 exceeds 0.5.

        With a calibrator (:meth:`calibrate`) the threshold applies to the calibrated
        risk. Triage ranks lesions by score; the operating points at a chosen
        sensitivity (:func:`lesionboost.evaluation.evaluate`) suit it better than 0.5.
        """
        positive = self.predict_proba(X)[:, 1] > 0.5
        return self.ensemble_.classes_[positive.astype(np.intp)]

    def explain(self, X: Any, top_k: int = 3, *, per_patient: int | None = None) -> pl.DataFrame:
        """The ``top_k`` features that raised each lesion's score the most.

        Contributions are SHAP values of the members' log-odds (see
        :meth:`GBDTEnsembleClassifier.feature_contributions`), largest first. They
        cost far more than scores; ``per_patient`` limits them to the lesions a
        triage list shows.

        Parameters
        ----------
        X : polars.DataFrame or pandas.DataFrame
        top_k : int, default=3
        per_patient : int, optional
            Explain only each patient's ``per_patient`` highest-scoring lesions (ties:
            the smaller ``isic_id``, then the earlier row); the other rows keep their
            score, with null ``top_features`` and ``top_contributions``. Every row of
            ``X`` still enters the patient-relative features, so an explained lesion is
            explained exactly as without ``per_patient``.

        Returns
        -------
        polars.DataFrame
            ``isic_id`` (when in ``X``), ``score`` (malignancy probability, as
            :meth:`predict_proba` gives it), ``top_features`` (list of names) and
            ``top_contributions`` (list of floats), one row per lesion in input order.
        """
        if not isinstance(top_k, numbers.Integral) or isinstance(top_k, bool) or top_k < 1:
            raise ValueError(f"top_k must be a positive integer, got {top_k!r}.")
        if per_patient is not None and (
            not isinstance(per_patient, numbers.Integral)
            or isinstance(per_patient, bool)
            or per_patient < 1
        ):
            raise ValueError(
                f"per_patient must be a positive integer or None, got {per_patient!r}."
            )
        frame = to_polars(X, what="X")
        if per_patient is not None and "patient_id" not in frame.columns:
            raise SchemaError(
                "explain(per_patient=...) needs the column 'patient_id' to find each patient's "
                "highest-scoring lesions; add it, or explain every row (per_patient=None)."
            )
        features = self.transform_features(frame)
        score = self._proba(features)[:, 1]
        if per_patient is None:
            rows = np.arange(frame.height)
            contributions = self.ensemble_.feature_contributions(features)
        else:
            rows = _top_rows_per_patient(frame, score, int(per_patient))
            contributions = self.ensemble_.feature_contributions(features[rows])
        k = min(int(top_k), contributions.shape[1])
        order = np.argsort(-contributions, axis=1, kind="stable")[:, :k]
        names: list[list[str] | None] = [None] * frame.height
        values: list[list[float] | None] = [None] * frame.height
        chosen_names = np.asarray(features.columns, dtype=object)[order].tolist()
        chosen_values = np.take_along_axis(contributions, order, axis=1).tolist()
        for position, row in enumerate(rows.tolist()):
            names[row] = chosen_names[position]
            values[row] = chosen_values[position]
        columns: dict[str, Any] = {}
        if "isic_id" in frame.columns:
            columns["isic_id"] = frame.get_column("isic_id")
        columns["score"] = score
        columns["top_features"] = pl.Series(names, dtype=pl.List(pl.String))
        columns["top_contributions"] = pl.Series(values, dtype=pl.List(pl.Float64))
        return pl.DataFrame(columns)

    # ------------------------------------------------------------------ persistence
    def _persistent_state(self) -> dict[str, Any]:
        followup = getattr(self, "followup_", None)
        return {
            "feature_names_in": [str(c) for c in self.feature_names_in_],
            "image_state": getattr(self, "image_state_", None),
            "calibrator": getattr(self, "calibrator_", None),
            "followup": None if followup is None else followup.to_dict(),
        }

    @classmethod
    def _from_persistent_state(
        cls,
        params: Mapping[str, Any],
        state: Mapping[str, Any],
        featurizer: Mapping[str, Any],
        ensemble: GBDTEnsembleClassifier,
    ) -> LesionBoostClassifier:
        from ..features import LesionFeaturizer

        params = dict(params)
        for name in ("feature_groups", "members"):
            if isinstance(params.get(name), list):
                params[name] = tuple(params[name])
        known = cls().get_params(deep=False)
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ValueError(f"unknown LesionBoostClassifier parameter(s) {unknown}")
        model = cls(**params)
        model.featurizer_ = LesionFeaturizer.from_dict(dict(featurizer))
        model.ensemble_ = ensemble
        model.classes_ = ensemble.classes_
        model.feature_names_in_ = np.asarray(state["feature_names_in"], dtype=object)
        model.n_features_in_ = len(model.feature_names_in_)
        if state.get("image_state") is not None:
            model.image_state_ = state["image_state"]
        if state.get("calibrator") is not None:
            model.calibrator_ = ScoreCalibrator.from_dict(state["calibrator"]).to_dict()
        followup = state.get("followup")
        model.followup_ = None if followup is None else FollowupModel.from_dict(followup)
        if list(model.featurizer_.feature_names_out_) != [
            str(n) for n in ensemble.feature_names_in_
        ]:
            raise ValueError("the featurizer's output columns differ from the ensemble's inputs")
        return model
