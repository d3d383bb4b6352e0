"""``GBDTEnsembleClassifier``: LightGBM + XGBoost + CatBoost with downsampling, bagging, blending.

How a fit works
---------------
For each of ``n_bags`` bags (each with its own seed) the positives are kept
(duplicated ``pos_oversample`` times) and the negatives are downsampled to
``1 / neg_ratio`` per positive row, as imbalanced-learn's
``RandomUnderSampler(sampling_strategy=neg_ratio)`` does; every member trains
one booster on that bag. A member's score is the mean raw margin (log-odds)
of its boosters.

How scores are blended
----------------------
``blend="rank"`` averages per-member *percentile ranks*, as the ISIC 2024
winners did, but ranks must work for a single new lesion at predict time.
So each member stores a reference distribution (1,024 quantiles of its scores
on up to 20,000 training rows) and a score is ranked against it: a monotone,
piecewise-linear map from the member's log-odds to the normal quantile of its
percentile, extended linearly beyond the reference range so that no two
lesions tie at the extremes. The weighted mean of those normal scores is the
blended rank. ``blend="mean"`` is the weighted mean of the members'
probabilities.

Probabilities
-------------
Downsampling, oversampling and ``scale_pos_weight`` multiply a booster's odds
by known factors; each member's log-odds are shifted back by them, so
``predict_proba`` estimates the probability at the training prevalence (of the
weighted population when ``fit`` gets ``sample_weight``). For
the rank blend the blended rank is mapped back through each member's
reference (the member's log-odds at that rank) before the probabilities are
averaged, so ``predict_proba``, ``decision_function`` (its log-odds) and
``predict`` (``decision_function > 0``) all rank lesions exactly as the blend.
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np
from scipy.special import expit, ndtri
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import (
    _check_sample_weight,
    check_array,
    check_is_fitted,
    validate_data,
)

from ._input import check_codes, column_position, encode_frame, frame_kind
from ._members import MEMBER_KINDS, MEMBERS, member_kind, resolve_threads

__all__ = ["GBDTEnsembleClassifier"]

logger = logging.getLogger(__name__)

_REFERENCE_ROWS = 20_000  # training rows scored for each member's rank reference
_REFERENCE_KNOTS = 1_024  # quantiles kept from them


# --------------------------------------------------------------------------- rank maps
def _weighted_quantile(values: np.ndarray, levels: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Quantiles of the weighted empirical distribution (each row at its weight's midpoint)."""
    order = np.argsort(values, kind="stable")
    sorted_values, sorted_weight = values[order], weight[order]
    cumulative = np.cumsum(sorted_weight)
    midpoints = (cumulative - 0.5 * sorted_weight) / cumulative[-1]
    return np.interp(levels, midpoints, sorted_values)


def _rank_knots(
    scores: np.ndarray, weight: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Quantile knots (score, normal quantile of its percentile), strictly increasing.

    With ``weight`` the percentiles are those of the weighted population, the
    one the members were fitted for.
    """
    k = min(_REFERENCE_KNOTS, scores.size)
    levels = (np.arange(k) + 0.5) / k
    if weight is None or np.all(weight == weight[0]):  # equal weights: the plain quantiles
        x = np.quantile(scores, levels)
    else:
        x = _weighted_quantile(scores, levels, weight)
    y = ndtri(levels)
    # Tree ensembles give tied scores; one knot per distinct score (mean rank) keeps
    # the map strictly increasing and therefore invertible.
    ux, inverse = np.unique(x, return_inverse=True)
    uy = np.bincount(inverse, weights=y) / np.bincount(inverse)
    return ux.astype(np.float64), uy.astype(np.float64)


def _piecewise(values: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Monotone piecewise-linear map through (x, y) with linear tails beyond the ends."""
    if x.size == 1:  # a constant member: keep its own scale
        return y[0] + (values - x[0])
    out = np.interp(values, x, y)
    step = max(1, x.size // 20)
    low = (y[step] - y[0]) / (x[step] - x[0])
    high = (y[-1] - y[-1 - step]) / (x[-1] - x[-1 - step])
    out = np.where(values < x[0], y[0] + (values - x[0]) * low, out)
    return np.where(values > x[-1], y[-1] + (values - x[-1]) * high, out)


def _inverse_rank(z: np.ndarray, knots: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Map a blended normal score back to one member's margin scale (its rank map inverted)."""
    margin, normal = knots
    return _piecewise(z, normal, margin)


def _mixture_logit(logits: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)) of p = sum_m w_m * sigmoid(logit_m), without overflow."""
    log_w = np.log(weights)[:, None]
    log_p = np.logaddexp.reduce(log_w - np.logaddexp(0.0, -logits), axis=0)
    log_q = np.logaddexp.reduce(log_w - np.logaddexp(0.0, logits), axis=0)
    return log_p - log_q


def _offset_center(column: np.ndarray, label: str) -> float:
    """The training mean of the offset column (its stand-in for missing values)."""
    finite = column[np.isfinite(column)]
    if finite.size == 0:
        raise ValueError(
            f"{label} has no value in X (every row is missing); name a column with values "
            "or pass None."
        )
    return float(np.mean(finite, dtype=np.float64))


def _offset_fit(
    column: np.ndarray, y: np.ndarray, weight: np.ndarray | None
) -> tuple[float, float]:
    """Intercept and slope of the unpenalised logistic regression of ``y`` on ``column``."""
    from sklearn.linear_model import LogisticRegression

    scale = float(np.std(column))
    if not scale > 0:  # a constant column: the base rate alone
        rate = float(np.average(y, weights=weight))
        return float(np.log(rate / (1.0 - rate))), 0.0
    centre = float(np.mean(column))
    fit = LogisticRegression(C=np.inf).fit(
        ((column - centre) / scale)[:, None], y, sample_weight=weight
    )
    slope = float(fit.coef_[0, 0]) / scale
    return float(fit.intercept_[0]) - slope * centre, slope


def _checked_weights(sample_weight: Any, X: np.ndarray, y01: np.ndarray) -> np.ndarray | None:
    """``sample_weight`` as floats, or None; each class must keep some weight."""
    if sample_weight is None:
        return None
    weight = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
    for label, name in ((1, "positive"), (0, "negative")):
        if not weight[y01 == label].sum() > 0:
            raise ValueError(
                f"sample_weight leaves the {name} class with a total weight of 0, so only "
                f"one class remains to learn; give some {name} rows a positive weight."
            )
    return weight


#: The linear member's options that name a view, and what a view sharing no column
#: with the member would leave it without.
_LINEAR_VIEWS = {
    "rule": "its rules would have nothing to split on",
    "own": "every column would count as patient context under 'context_scale'",
}


class GBDTEnsembleClassifier(ClassifierMixin, BaseEstimator):
    """Bagged, downsampled LightGBM + XGBoost + CatBoost ensemble for rare positives.

    Parameters
    ----------
    members : sequence of str, default=("lightgbm", "xgboost", "catboost")
        The ensemble's members; boosters are built inside :meth:`fit`. An entry
        is a library, ``"lightgbm"``, ``"xgboost"``, ``"catboost"`` or
        ``"linear"`` (a penalised logistic regression on quantile-normalised columns
        and one-hot categoricals, see ``linear_params``), trained on every
        column, or ``"library:view"``, that library trained only on the
        columns of ``views[view]`` (e.g. ``"lightgbm:raw"``). A member that sees
        fewer columns errs differently from the others, so the blend hedges
        against features that add noise on a given dataset.
    lightgbm_params, xgboost_params, catboost_params : dict, optional
        Native parameters merged over strong defaults for SLICE-3D (the tuned
        values of the public "Only Tabular Data" notebook lineage, regularised and
        made cheaper where ``benchmarks/quality.py`` measured the same score in
        half the time; each member's ``defaults`` says which). The number of
        boosting rounds is ``n_estimators``. Seeds come from ``random_state`` and
        threads from ``n_jobs``; setting them here is an error.
    linear_params : dict, optional
        The ``"linear"`` member's settings: ``C`` (inverse penalty strength, default
        0.1), ``n_quantiles`` (200), ``max_iter`` (1000) and ``tails`` (hinge
        thresholds on the normal-score scale, e.g. ``[1.0]``; default none: one
        linear effect per column), and ``rules`` (default 0: none), the number of
        shallow LightGBM trees (``rule_depth``, 3) whose leaves join the regression
        as indicator columns of value ``rule_scale`` (0.3; a list of values: the one
        that scores best on two inner folds of the first bag's rows, then used by
        every bag), so that it also fits
        thresholded interactions (RuleFit), and ``rule_view`` (default None: every
        column the member sees), a key of ``views`` whose columns alone the rule
        trees split on (e.g. ``"raw"``: conjunctions of the lesion's own
        measurements, while the regression's terms still see every column), or
        ``rule_columns``, the same limit as positions among the member's columns
        (one of the two at most), and ``rule_residual`` (default False: the trees
        are boosted from the base rate; True: from the margin of the regression
        without rules, so they split on what its terms leave); and
        ``context_scale`` (default 1: none) with ``own_view`` (or ``own_columns``),
        a key of ``views`` holding the lesion's own columns: every other numeric
        column enters the regression at ``context_scale`` times its normal score,
        an L2 penalty ``1 / context_scale**2`` times an own column's; and
        ``l1_ratio`` (default 0: an L2 penalty), the L1 share of the penalty (1:
        the lasso, which sets most coefficients, rules' included, exactly to 0; in
        between: the elastic net), under which scales act on the penalty in proportion, not in their
        square. It trains on the same downsampled bags as the boosters, on the CPU.
    neg_ratio : float or None, default=0.01
        Positive-to-negative ratio after per-bag negative downsampling
        (0.01 -> 100 negatives per positive row); ``None`` keeps every negative.
    pos_oversample : float, default=1.0
        Factor by which positives are duplicated in each bag (1.0 = none).
    n_bags : int, default=2
        Bags per member, each with its own negative sample and seed. Two bags
        keep a default 5-fold run of :class:`~lesionboost.LesionBoostClassifier`
        on the full SLICE-3D size within ~3 minutes on two cores.
    blend : {"rank", "mean"}, default="rank"
        Weighted average of per-member percentile ranks (against a stored
        reference, so one new row can be scored) or of probabilities.
    weights : dict or sequence of float, optional
        Weight per member (a dict keyed by member, or one value per entry of
        ``members``); equal by default. Members with weight 0 are not trained.
    views : dict of str -> sequence of str or int, optional
        Named column subsets (column names of a frame, or indices) for the
        members written ``"library:view"``. Categorical columns keep their
        treatment inside a view.
    categorical_features : "auto", None or sequence of str or int, default="auto"
        Columns passed to every library as native categoricals. ``"auto"``:
        string, categorical and enum columns of a polars or pandas frame; a list
        names or indexes columns, which may also hold integer codes.
    offset_column : str or int, optional
        A numeric column (name or index) with a strong additive effect on the
        log-odds, such as a score from another model. In each bag a one-column
        logistic regression of the labels on it gives every row a starting margin;
        the boosters (LightGBM ``init_score``, XGBoost ``base_margin``, CatBoost
        ``baseline``) are trained from that margin, and it is added to their scores.
        The trees then model what the column leaves, instead of re-learning its
        effect in coarse steps from the few positives, and may still split on it.
        The linear member is unaffected (the column is one of its terms). Missing
        values take the column's training mean. Default: none.
    device : {"cpu", "cuda"}, default="cpu"
        ``"cuda"`` sets LightGBM ``device_type="cuda"``, XGBoost
        ``device="cuda"`` and CatBoost ``task_type="GPU"``; prediction runs on
        the CPU. A LightGBM without a CUDA learner (the PyPI wheel) trains on
        the CPU with a ``RuntimeWarning``. GPU training is not bit-reproducible.
    n_jobs : int, optional
        Threads per booster; ``None`` uses each library's default (all cores),
        negative values count back from the number of cores.
    random_state : int, RandomState or None, default=0
        Seeds the bag samples and the boosters; with an int and ``device="cpu"``
        two fits give identical predictions.

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
        Class labels; ``classes_[1]`` is the positive (malignant) class.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when ``X`` has string column names.
    categorical_features_ : list of int
        Indices of the columns treated as categorical.
    category_maps_ : dict of int -> list of str
        Levels of text columns (code 0 = missing, 1 = unseen, 2.. = levels).
    members_ : tuple of str
        The members trained (weight > 0).
    view_columns_ : dict of str -> list of int
        Column indices of each view a trained member uses.
    boosters_ : dict of str -> list
        Native boosters per member, one per bag.
    blend_ : str
        The blend the model was fitted with (``predict`` uses it even after
        ``set_params(blend=...)``, until the next ``fit``).
    weights_, offsets_ : dict of str -> float
        Normalised blend weights and the log-odds shift undoing the resampling.
    offset_column_ : int or None
        Index of ``offset_column`` in ``X`` (None without one).
    offset_center_ : float
        The column's training mean, which stands in for its missing values.
    offset_fits_ : list of (float, float)
        Intercept and slope of the column's logistic fit in each bag; the boosters'
        scores add the mean of the bags' fits.
    rank_knots_ : dict of str -> (ndarray, ndarray)
        Each member's rank reference (``blend="rank"`` only).
    sampling_ : dict
        Rows, positives and the per-bag sample sizes seen in fit.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(400, 4)); y = (X[:, 0] + rng.normal(size=400) > 1.5).astype(int)
    >>> clf = GBDTEnsembleClassifier(members=("lightgbm", "xgboost"), n_bags=1,
    ...     lightgbm_params={"n_estimators": 20, "min_data_in_leaf": 5},
    ...     xgboost_params={"n_estimators": 20}, neg_ratio=None).fit(X, y)
    >>> clf.predict_proba(X[:2]).shape
    (2, 2)
    """

    category_maps_: dict[int, list[str]]

    def __init__(
        self,
        *,
        members: Sequence[str] = MEMBER_KINDS,
        lightgbm_params: Mapping[str, Any] | None = None,
        xgboost_params: Mapping[str, Any] | None = None,
        catboost_params: Mapping[str, Any] | None = None,
        linear_params: Mapping[str, Any] | None = None,
        neg_ratio: float | None = 0.01,
        pos_oversample: float = 1.0,
        n_bags: int = 2,
        blend: str = "rank",
        weights: Mapping[str, float] | Sequence[float] | None = None,
        views: Mapping[str, Sequence[str | int]] | None = None,
        categorical_features: str | Sequence[str | int] | None = "auto",
        offset_column: str | int | None = None,
        device: str = "cpu",
        n_jobs: int | None = None,
        random_state: int | np.random.RandomState | None = 0,
    ) -> None:
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
        self.views = views
        self.categorical_features = categorical_features
        self.offset_column = offset_column
        self.device = device
        self.n_jobs = n_jobs
        self.random_state = random_state

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.categorical = True
        tags.classifier_tags.multi_class = False
        return tags

    # ------------------------------------------------------------------ validation
    def _checked_members(self) -> tuple[list[str], dict[str, float]]:
        members = [self.members] if isinstance(self.members, str) else list(self.members)
        unknown = [m for m in members if not isinstance(m, str) or member_kind(m) not in MEMBERS]
        if not members or unknown or len(set(members)) != len(members):
            raise ValueError(
                f"members must be distinct names from {list(MEMBERS)}, each optionally "
                f"followed by ':view' (a key of views), got {self.members!r}."
            )
        views = {} if self.views is None else self.views
        if not isinstance(views, Mapping):
            raise ValueError(f"views must be a dict of name -> columns or None, got {views!r}.")
        for member in members:
            view = member.partition(":")[2]
            if ":" in member and view not in views:
                raise ValueError(
                    f"member {member!r} uses the view {view!r}, which views does not define "
                    f"(views: {sorted(views) or 'none'}); pass views={{{view!r}: [columns]}}."
                )
        if self.weights is None:
            raw = {m: 1.0 for m in members}
        elif isinstance(self.weights, Mapping):
            extra = sorted(set(self.weights) - set(members))
            if extra:
                raise ValueError(f"weights names {extra}, which are not in members={members}.")
            raw = {m: float(self.weights.get(m, 0.0)) for m in members}
        else:
            values = list(self.weights)
            if len(values) != len(members):
                raise ValueError(
                    f"weights has {len(values)} values for {len(members)} members {members}; "
                    "give one weight per member or a dict."
                )
            raw = {m: float(w) for m, w in zip(members, values, strict=True)}
        if any(not np.isfinite(w) or w < 0 for w in raw.values()) or sum(raw.values()) <= 0:
            raise ValueError(f"weights must be finite, >= 0 and not all 0, got {raw}.")
        total = sum(raw.values())
        kept = [m for m in members if raw[m] > 0]
        return kept, {m: raw[m] / total for m in kept}

    def _check_params(self) -> None:
        if self.blend not in ("rank", "mean"):
            raise ValueError(f"blend must be 'rank' or 'mean', got {self.blend!r}.")
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {self.device!r}.")
        if self.neg_ratio is not None and not (
            isinstance(self.neg_ratio, numbers.Real) and self.neg_ratio > 0
        ):
            raise ValueError(
                f"neg_ratio must be a number > 0 (positives per negative after downsampling, "
                f"e.g. 0.01) or None, got {self.neg_ratio!r}."
            )
        if not (isinstance(self.pos_oversample, numbers.Real) and self.pos_oversample >= 1):
            raise ValueError(f"pos_oversample must be >= 1, got {self.pos_oversample!r}.")
        if not isinstance(self.n_bags, numbers.Integral) or self.n_bags < 1:
            raise ValueError(f"n_bags must be an integer >= 1, got {self.n_bags!r}.")
        if self.n_jobs is not None and (
            not isinstance(self.n_jobs, numbers.Integral) or self.n_jobs == 0
        ):
            raise ValueError(f"n_jobs must be None or a non-zero integer, got {self.n_jobs!r}.")
        for kind in MEMBERS:
            params = getattr(self, f"{kind}_params")
            if params is not None and not isinstance(params, Mapping):
                raise ValueError(f"{kind}_params must be a dict or None, got {params!r}.")

    # ------------------------------------------------------------------ input
    def _prepare(self, X: Any, y: Any = None, *, fit: bool) -> Any:
        """Validate ``X`` (and ``y`` in fit); return a float32 matrix (column-major for a
        polars frame at predict time, else row-major)."""
        kind = frame_kind(X)
        if kind is not None and type(X).__name__ == "LazyFrame":
            X = X.collect()
        cats: list[int] = []
        levels: dict[int, list[str]] = {}
        if kind is not None:
            X, cats, levels = encode_frame(
                X,
                kind,
                spec=self.categorical_features,
                levels=None if fit else self.category_maps_,
                owner=type(self).__name__,
            )
        check = {"dtype": np.float32, "ensure_all_finite": "allow-nan", "order": "C"}
        if fit:
            X, y = validate_data(self, X, y, reset=True, **check)
            spec = self.categorical_features
            if kind is None and spec not in ("auto", None):
                if isinstance(spec, str) or any(not isinstance(c, numbers.Integral) for c in spec):
                    raise ValueError(
                        f"categorical_features={spec!r} names columns, but X is an array "
                        "without column names; pass column indices or a DataFrame."
                    )
                names = [str(i) for i in range(X.shape[1])]
                cats = [column_position(c, names) for c in spec]
            self.categorical_features_ = sorted(set(cats))
            self.category_maps_ = levels
        elif kind == "polars":
            # Names and width checked on the frame, values converted by polars itself
            # into column-major order (a copy per column): scikit-learn's generic frame
            # conversion, or a row-major copy, takes seconds for 500k lesions, and every
            # member predicts from column-major data without a copy.
            validate_data(self, X, reset=False, skip_check_array=True)
            X = check_array(X.to_numpy(order="fortran"), **{**check, "order": "F"})
        else:
            X = validate_data(self, X, reset=False, **check)
        for index in self.categorical_features_:
            if index not in self.category_maps_:
                label = (
                    repr(str(self.feature_names_in_[index]))
                    if hasattr(self, "feature_names_in_")
                    else f"at index {index}"
                )
                check_codes(X[:, index], label)
        return (X, y) if fit else X

    # ------------------------------------------------------------------ fit
    def _bag_rows(self, y: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
        positives = np.flatnonzero(y == 1)
        negatives = np.flatnonzero(y == 0)
        copies = int(np.floor(self.pos_oversample))
        extra = int(round(self.pos_oversample * positives.size)) - copies * positives.size
        pos_rows = np.concatenate(
            [np.tile(positives, copies), rng.choice(positives, size=extra, replace=False)]
        )
        n_neg = negatives.size
        if self.neg_ratio is not None:
            n_neg = min(n_neg, max(1, int(round(pos_rows.size / self.neg_ratio))))
        neg_rows = rng.choice(negatives, size=n_neg, replace=False)
        return np.sort(np.concatenate([pos_rows, neg_rows]))

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> GBDTEnsembleClassifier:
        """Fit every member on ``n_bags`` downsampled bags of ``(X, y)``.

        Parameters
        ----------
        X : polars.DataFrame, pandas.DataFrame or array-like of shape (n_samples, n_features)
            Numeric features (NaN = missing) plus categorical columns.
        y : array-like of shape (n_samples,)
            Binary labels; the larger label is the positive class.
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weight of every row. Rows of weight 0 are left out; the
            others are rescaled to mean 1 (the members' regularisation works in
            weight units) and handed to each member with the rows of its bag (bags
            are still drawn by row, not by weight). Probabilities are those of the
            weighted population (a weight of 2 counts a row twice): the offsets undo
            the downsampling by the weight each bag kept of either class, averaged
            over the bags, and ``scale_pos_weight`` by its value; the rank blend's
            reference percentiles are those of the weighted rows too. Weights are
            not exact row copies, though: LightGBM's ``min_data_in_leaf`` and
            CatBoost's and LightGBM's bins count rows.

        Returns
        -------
        self : GBDTEnsembleClassifier
        """
        self._check_params()
        members, weights = self._checked_members()
        X, y = self._prepare(X, y, fit=True)
        check_classification_targets(y)
        y_type = type_of_target(y, input_name="y")
        if y_type != "binary":
            raise ValueError(
                f"Only binary classification is supported. The type of the target is {y_type}."
            )
        self.classes_, y01 = np.unique(y, return_inverse=True)
        if self.classes_.size != 2:
            raise ValueError(
                f"{type(self).__name__} needs both classes in y, got only one class "
                f"({self.classes_.tolist()}); add samples of the other class."
            )
        y01 = y01.astype(np.int32)
        weight = _checked_weights(sample_weight, X, y01)
        if weight is not None:
            if not weight.all():
                # A weight of 0 removes the row (it must not take a bag's downsampling slot).
                keep = weight > 0
                X, y01, weight = X[keep], y01[keep], weight[keep]
            # Mean 1 keeps the members' regularisation (L2, minimum hessian per leaf),
            # which works in weight units, where the defaults were chosen.
            weight = weight / weight.mean()
        resolved = {
            kind: MEMBERS[kind].params(
                getattr(self, f"{kind}_params"), device=self.device, n_jobs=self.n_jobs
            )
            for kind in dict.fromkeys(member_kind(m) for m in members)
        }
        linear = resolved["linear"][0] if "linear" in resolved else {}
        self.view_columns_ = self._view_columns(members)
        linear_views = {
            prefix: self._linear_view_columns(prefix, linear[f"{prefix}_view"])
            for prefix in _LINEAR_VIEWS
            if linear.get(f"{prefix}_view") is not None
        }
        member_params = {
            member: self._member_params(member, resolved[member_kind(member)][0], linear_views)
            for member in members
        }
        self.offset_column_ = self._offset_position()
        self.offset_center_ = 0.0
        self.offset_fits_: list[tuple[float, float]] = []
        if self.offset_column_ is not None:
            self.offset_center_ = _offset_center(X[:, self.offset_column_], self._offset_label())
        rng = check_random_state(self.random_state)
        self.boosters_: dict[str, list[Any]] = {member: [] for member in members}
        bag_sizes = []
        bag_weights = []  # (positive, negative) weight each bag kept
        for bag in range(int(self.n_bags)):
            rows = self._bag_rows(y01, rng)
            seed = int(rng.randint(0, 2**31 - 1))
            Xb, yb = X[rows], y01[rows]
            wb = None if weight is None else weight[rows]
            bag_sizes.append([int(yb.sum()), int(yb.size - yb.sum())])
            if wb is not None:
                bag_weights.append([float(wb[yb == 1].sum()), float(wb[yb == 0].sum())])
            init = None
            if self.offset_column_ is not None:
                column = self._offset_values(Xb)
                intercept, slope = _offset_fit(column, yb, wb)
                self.offset_fits_.append((intercept, slope))
                init = intercept + slope * column
            for member in members:
                kind = member_kind(member)
                params, rounds = member_params[member], resolved[kind][1]
                columns, cat_idx = self._member_columns(member)
                Xm = Xb if columns is None else np.ascontiguousarray(Xb[:, columns])
                logger.debug("bag %d/%d: %s on %d rows", bag + 1, self.n_bags, member, rows.size)
                adapter = MEMBERS[kind]
                booster = adapter.fit(
                    params,
                    rounds,
                    Xm,
                    yb,
                    cat_idx,
                    seed,
                    wb,
                    init_score=init if adapter.takes_init_score else None,
                )
                self.boosters_[member].append(booster)
                if bag == 0:  # a choice among candidates holds for every bag
                    member_params[member] = adapter.settled(params, booster)
        n_pos = int(y01.sum())
        n_neg = int(y01.size - n_pos)
        self.members_ = tuple(members)
        self.blend_ = self.blend  # predict uses the blend it was fitted for, not a later set_params
        self.weights_ = weights
        # Undo the odds distortion of resampling and class weights: kept a fraction
        # beta of negatives -> odds x 1/beta; k copies of positives and weight w -> x k w.
        if weight is None:  # every bag keeps the same row counts
            kept_pos, kept_neg = bag_sizes[0]
            resampling = float(np.log(kept_neg / n_neg) - np.log(kept_pos / n_pos))
        else:  # the same ratios in weight, which differ between bags: their mean log-odds shift
            total_pos, total_neg = float(weight[y01 == 1].sum()), float(weight[y01 == 0].sum())
            resampling = float(
                np.mean(
                    [
                        np.log(kept_neg / total_neg) - np.log(kept_pos / total_pos)
                        for kept_pos, kept_neg in bag_weights
                    ]
                )
            )
        class_weight = {
            kind: float(np.log(MEMBERS[kind].pos_weight(params)))
            for kind, (params, _) in resolved.items()
        }
        self.offsets_ = {
            member: resampling - class_weight[member_kind(member)] for member in members
        }
        self.sampling_ = {
            "n_rows": int(y01.size),
            "n_positive": n_pos,
            "bags": bag_sizes,
        }
        if weight is not None:
            self.sampling_.update(
                weighted=True,
                weight=[float(weight[y01 == 1].sum()), float(weight[y01 == 0].sum())],
                bag_weights=bag_weights,
            )
        self.rank_knots_ = {}
        if self.blend_ == "rank":
            rows = np.arange(X.shape[0])
            if X.shape[0] > _REFERENCE_ROWS:
                rows = np.sort(rng.choice(X.shape[0], _REFERENCE_ROWS, replace=False))
            margins = self._member_margins(X[rows])
            reference_weight = None if weight is None else weight[rows]
            self.rank_knots_ = {
                member: _rank_knots(margins[member], reference_weight) for member in members
            }
        return self

    def _view_columns(self, members: Sequence[str]) -> dict[str, list[int]]:
        """Column indices of every view the ``members`` use, names resolved against X."""
        used = sorted({m.partition(":")[2] for m in members if ":" in m})
        return {view: self._view_positions(view) for view in used}

    def _linear_view_columns(self, prefix: str, view: str) -> list[int]:
        """Column indices of X in the view the linear member's ``<prefix>_view`` names."""
        views = {} if self.views is None else self.views
        if view not in views:
            raise ValueError(
                f"linear_params['{prefix}_view'] = {view!r} is not a view of the ensemble "
                f"(views: {sorted(views) or 'none'}); name one of them, or define it with "
                f"views={{{view!r}: [columns]}}."
            )
        return self._view_positions(view)

    def _view_positions(self, view: str) -> list[int]:
        """The sorted column indices of X that ``views[view]`` names (names or indices)."""
        names = (
            [str(n) for n in self.feature_names_in_]
            if hasattr(self, "feature_names_in_")
            else [str(i) for i in range(self.n_features_in_)]
        )
        spec = cast(Mapping[str, Sequence[Any]], self.views)[view]
        if isinstance(spec, str) or not len(spec):
            raise ValueError(
                f"views[{view!r}] must be a non-empty list of column names or indices, "
                f"got {spec!r}."
            )
        positions = {name: i for i, name in enumerate(names)}
        columns: set[int] = set()
        for column in spec:
            if isinstance(column, numbers.Integral) and not isinstance(column, bool):
                if not 0 <= int(column) < len(names):
                    raise ValueError(
                        f"views[{view!r}] holds the index {column}, out of range for X with "
                        f"{len(names)} columns."
                    )
                columns.add(int(column))
            elif str(column) in positions:
                columns.add(positions[str(column)])
            else:
                raise ValueError(
                    f"views[{view!r}] names column {str(column)!r}, which X does not have; "
                    f"X has {names[:5]}{' ...' if len(names) > 5 else ''}."
                )
        return sorted(columns)

    def _offset_label(self) -> str:
        return f"offset_column={self.offset_column!r}"

    def _offset_position(self) -> int | None:
        """The index of ``offset_column`` in X (None without one), checked numeric."""
        if self.offset_column is None:
            return None
        names = (
            [str(n) for n in self.feature_names_in_]
            if hasattr(self, "feature_names_in_")
            else [str(i) for i in range(self.n_features_in_)]
        )
        column = self.offset_column
        if isinstance(column, numbers.Integral) and not isinstance(column, bool):
            if not 0 <= int(column) < len(names):
                raise ValueError(
                    f"offset_column={column} is out of range for X with {len(names)} columns; "
                    "pass a column index or name of X."
                )
            position = int(column)
        elif isinstance(column, str) and column in names:
            position = names.index(column)
        else:
            raise ValueError(
                f"offset_column={column!r} is not a column of X (X has {names[:5]}"
                f"{' ...' if len(names) > 5 else ''}); name a numeric column or pass None."
            )
        if position in self.categorical_features_:
            raise ValueError(
                f"offset_column={column!r} is categorical; the starting margin is a logistic "
                "fit on a numeric column. Name a numeric column or pass None."
            )
        return position

    def _offset_values(self, X: np.ndarray) -> np.ndarray:
        """The offset column of ``X`` as float64, missing values at the training mean."""
        column = np.asarray(X[:, self.offset_column_], dtype=np.float64)
        return np.where(np.isnan(column), self.offset_center_, column)

    def _offset_margin(self, X: np.ndarray) -> np.ndarray:
        """The boosters' starting margin for ``X``: the mean of the bags' offset fits."""
        fits = np.asarray(self.offset_fits_, dtype=np.float64)
        intercept, slope = fits.mean(axis=0)
        return intercept + slope * self._offset_values(X)

    def _member_params(
        self, member: str, params: dict[str, Any], linear_views: Mapping[str, Sequence[int]]
    ) -> dict[str, Any]:
        """``params`` for ``member``; for a linear member with a ``rule_view`` or an
        ``own_view``, the positions of that view's columns (``linear_views``: indices of
        X) among the member's own columns, as ``rule_columns`` / ``own_columns``."""
        if member_kind(member) != "linear" or not linear_views:
            return params
        columns, _ = self._member_columns(member)
        seen = range(self.n_features_in_) if columns is None else columns
        out = dict(params)
        for prefix, view_columns in linear_views.items():
            allowed = set(view_columns)
            positions = [i for i, column in enumerate(seen) if column in allowed]
            if not positions:
                raise ValueError(
                    f"linear_params['{prefix}_view'] = {params[f'{prefix}_view']!r} shares no "
                    f"column with the member {member!r}; {_LINEAR_VIEWS[prefix]}."
                )
            out |= {f"{prefix}_view": None, f"{prefix}_columns": tuple(positions)}
        return out

    def _member_columns(self, member: str) -> tuple[list[int] | None, list[int]]:
        """The columns ``member`` sees (None: all) and its categoricals' positions among them."""
        view = member.partition(":")[2]
        if not view:
            return None, list(self.categorical_features_)
        columns = self.view_columns_[view]
        categorical = set(self.categorical_features_)
        return columns, [i for i, c in enumerate(columns) if c in categorical]

    # ------------------------------------------------------------------ predict
    def _member_margins(self, X: np.ndarray) -> dict[str, np.ndarray]:
        threads = resolve_threads(self.n_jobs)
        out = {}
        for member in self.members_:
            adapter = MEMBERS[member_kind(member)]
            columns, cat_idx = self._member_columns(member)
            Xm = X if columns is None else np.ascontiguousarray(X[:, columns])
            data = adapter.prepare(Xm, cat_idx, threads)
            out[member] = adapter.mean_margin(self.boosters_[member], data, threads)
            if self.offset_column_ is not None and adapter.takes_init_score:
                out[member] += self._offset_margin(X)
        return out

    def decision_function(self, X: Any) -> np.ndarray:
        """Blended log-odds of the positive class (``> 0`` means ``predict`` says positive).

        Parameters
        ----------
        X : polars.DataFrame, pandas.DataFrame or array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        check_is_fitted(self, "boosters_")
        X = self._prepare(X, fit=False)
        margins = self._member_margins(X)
        kinds = list(self.members_)
        weights = np.array([self.weights_[k] for k in kinds])
        if self.blend_ == "rank":
            z = cast(
                np.ndarray,
                sum(self.weights_[k] * _piecewise(margins[k], *self.rank_knots_[k]) for k in kinds),
            )
            logits = np.stack(
                [_inverse_rank(z, self.rank_knots_[k]) + self.offsets_[k] for k in kinds]
            )
        else:
            logits = np.stack([margins[k] + self.offsets_[k] for k in kinds])
        return _mixture_logit(logits, weights)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Probability of each class, columns ordered as ``classes_``.

        Parameters
        ----------
        X : polars.DataFrame, pandas.DataFrame or array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, 2)
        """
        decision = self.decision_function(X)
        return np.column_stack([expit(-decision), expit(decision)])

    def predict(self, X: Any) -> np.ndarray:
        """Predicted class label (positive when the blended probability exceeds 0.5)."""
        positive = self.decision_function(X) > 0
        return self.classes_[positive.astype(np.intp)]

    def feature_contributions(self, X: Any) -> np.ndarray:
        """Per-row, per-feature SHAP contributions to the members' log-odds.

        Each member's contributions (LightGBM ``pred_contrib``, XGBoost
        ``pred_contribs``, CatBoost ``ShapValues``) are averaged over its bags,
        then weighted by the blend weights. Use them to explain which features
        raised a lesion's score; they are in log-odds units of the members, not
        of the blended rank.

        Returns
        -------
        ndarray of shape (n_samples, n_features_in_)
        """
        check_is_fitted(self, "boosters_")
        X = self._prepare(X, fit=False)
        threads = resolve_threads(self.n_jobs)
        total = np.zeros(X.shape, dtype=np.float64)
        for member in self.members_:
            adapter = MEMBERS[member_kind(member)]
            columns, cat_idx = self._member_columns(member)
            Xm = X if columns is None else np.ascontiguousarray(X[:, columns])
            data = adapter.prepare(Xm, cat_idx, threads)
            share = np.zeros(Xm.shape, dtype=np.float64)
            for booster in self.boosters_[member]:
                share += adapter.contributions(booster, data, threads)
            share *= self.weights_[member] / len(self.boosters_[member])
            if columns is None:
                total += share
            else:  # a view's contributions land on its own columns
                total[:, columns] += share
            if self.offset_column_ is not None and adapter.takes_init_score:
                # the starting margin is the offset column's, about its training mean
                slope = float(np.mean([fit[1] for fit in self.offset_fits_]))
                centred = self._offset_values(X) - self.offset_center_
                total[:, self.offset_column_] += self.weights_[member] * slope * centred
        return total
