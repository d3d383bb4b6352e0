"""The ``linear`` member's model: a penalised logistic regression on quantile-normalised columns.

Boosted trees with a few hundred positives learn a risk that adds up many small,
smooth effects (one per column, or one per patient-relative feature) only in
coarse steps. A linear model on the same features learns exactly that kind of
risk from few positives, and errs differently from the trees, so it earns its
place in the rank blend (``benchmarks/defaults.py``).

Each numeric column is mapped to normal scores through its training quantiles:
knots at ``n_quantiles`` evenly spaced levels (tied quantiles merged into one knot
at their mean level, so a column with many equal values maps them to the middle of
their run, as scikit-learn's ``QuantileTransformer`` does), each knot's level turned
into its normal score by ``scipy.special.ndtri``, and values interpolated linearly
between knots. Heavy tails and monotone transforms of a column do not matter, and
a missing value becomes 0, the median. With ``tails`` (normal-score thresholds
``t``), each numeric score ``z`` also enters through the hinges ``max(z - t, 0)`` and
``max(-z - t, 0)``: a piecewise-linear effect per column that can rise faster in
either tail or rise in both (an outlier in either direction). Each categorical column
becomes one indicator per level seen in training (missing and unseen levels: all
zero).

With ``rules`` (a number of trees), the model also holds thresholded interactions,
as RuleFit (Friedman and Popescu, 2008, *Ann. Appl. Stat.* 2(3)) does: a LightGBM
of ``rules`` shallow trees (depth ``rule_depth``) is fitted to the same rows, each
of its leaves -- a conjunction of up to ``rule_depth`` thresholds -- becomes one
indicator column with the value ``rule_scale`` (so its L2 penalty is
``1 / rule_scale**2`` times that of a normal score, its L1 penalty
``1 / rule_scale`` times), and one logistic regression
fits the scores and the rules together. Each rule's coefficient (times
``rule_scale``) is then written into its leaf, so the rules score as that
LightGBM model's raw output, stored in LightGBM's own text format. With
``rule_columns`` the trees split only on those columns (the others are missing in
their training data), so the rules can be conjunctions of a chosen set of columns,
such as a lesion's own measurements, while the regression sees every column.
``rule_scale`` may also be a list of candidates: the member then fits each of them on
two stratified folds of its training rows and keeps the one whose out-of-fold
scores have the best pAUC above 80 % TPR (the first on a tie), before fitting all
the rows with it, so how lightly the rules are penalised follows the data. The
candidates of a fold share its design matrix and rule trees, which do not depend on
the scale, and the fitted member records the scale it kept (``rule_scale``); an
ensemble makes the choice on its first bag and fits the other bags with it.
With ``rule_residual`` the trees are grown from the margin of the regression on the
column terms alone (LightGBM's ``init_score``) instead of from the base rate, so
their splits model what the smooth terms leave -- the interactions -- rather than
re-learning the main effects the terms already hold; the joint fit is then the
same.

With ``context_scale`` below 1 and ``own_columns`` (or, in an ensemble, ``own_view``)
naming the lesion's own columns, every other numeric column -- the derived and
patient-relative features -- enters the regression at ``context_scale`` times its
normal score (its hinges too), so its L2 penalty is ``1 / context_scale**2`` times
that of an own column: the fit keeps an effect in the lesion's own measurements
unless a patient-relative feature explains the labels clearly better. The scale is
folded into the coefficients after the fit, so scoring and the stored model are
those of an ordinary fit.

The member's penalty is L2 by default (``l1_ratio`` 0; ``LesionBoostClassifier``'s
defaults set 1). With ``l1_ratio`` 1 it is L1, the
lasso RuleFit itself uses: most coefficients become exactly 0, so from a few
hundred positives the fit keeps the handful of columns and rules that carry the
risk instead of spreading small weights over hundreds of them; in between it is
the elastic net. Scales act on an L1 penalty in proportion (a column at half its
normal score carries twice the penalty), on an L2 penalty in their square.

:class:`~sklearn.linear_model.LogisticRegression` fits the coefficients
(L2: Newton-Cholesky, or with rules L-BFGS on a sparse design; L1: liblinear's
coordinate descent; the elastic net: SAGA). Each column's share of
the log-odds is piecewise linear in the column, so scoring looks it up in one table
(one ``numpy.interp`` per column for all the bags of a member, rows spread over
threads) without building the design matrix. A fitted model
is stored as JSON (knots, levels, coefficients, the rule trees as LightGBM model
text), never as a pickle.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

__all__ = ["LinearScorer", "mean_margin"]

#: Parameters of the ``linear`` member, and their defaults.
LINEAR_DEFAULTS: dict[str, Any] = {"C": 0.1, "n_quantiles": 200, "max_iter": 1000, "tails": ()}
#: The rule parameters of the ``linear`` member, and their defaults (no rules). Kept
#: apart from :data:`LINEAR_DEFAULTS`, whose entries identify the member's
#: configuration in recorded benchmark cells; with ``rules=0`` the others are unused.
#: ``rule_columns`` (indices into the member's columns) limits the columns the rule
#: trees split on; ``rule_view`` names an ensemble view that the ensemble turns into
#: ``rule_columns`` (None: every column); ``rule_residual`` grows the trees from the
#: margin of the regression without rules instead of from the base rate.
RULE_DEFAULTS: dict[str, Any] = {
    "rules": 0,
    "rule_depth": 3,
    "rule_scale": 0.3,
    "rule_view": None,
    "rule_columns": None,
    "rule_residual": False,
}

# Settings of the rule trees besides their number and depth: shallow, fast-learning
# trees whose leaves hold enough rows to be a rule, with row and column subsampling
# so that the trees propose varied conjunctions.
_RULE_TREES: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.1,
    "min_data_in_leaf": 20,
    "lambda_l2": 1.0,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "deterministic": True,  # with row-wise histograms: the same trees on any thread count
    "force_row_wise": True,
    "verbose": -1,
}


#: The context penalty of the ``linear`` member, and its defaults (off): numeric
#: columns outside ``own_columns`` enter at ``context_scale`` times their normal
#: score; ``own_view`` names an ensemble view that the ensemble turns into
#: ``own_columns``. Kept apart from :data:`LINEAR_DEFAULTS` as the rule options are.
CONTEXT_DEFAULTS: dict[str, Any] = {
    "context_scale": 1.0,
    "own_view": None,
    "own_columns": None,
}
#: The penalty of the ``linear`` member: the L1 share of the elastic net (0: L2, the
#: default; 1: L1). Kept apart from :data:`LINEAR_DEFAULTS` as the rule options are.
PENALTY_DEFAULTS: dict[str, Any] = {"l1_ratio": 0.0}


def check_linear_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults merged with ``params``; a clear error for an unknown or invalid entry."""
    known = {**LINEAR_DEFAULTS, **RULE_DEFAULTS, **CONTEXT_DEFAULTS, **PENALTY_DEFAULTS}
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(
            f"linear_params accepts {sorted(known)}, got {unknown}; the linear "
            "member is a penalised logistic regression (C: inverse regularisation strength, "
            "l1_ratio: the L1 share of its penalty)."
        )
    merged = {**known, **params}
    scale = merged["rule_scale"]
    if isinstance(scale, (list, tuple)):  # candidates, chosen by inner cross-validation
        if not scale or any(
            isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 for v in scale
        ):
            raise ValueError(
                "linear_params['rule_scale'] must be a number > 0 or a non-empty list of "
                f"numbers > 0 (candidates chosen by inner cross-validation), got {scale!r}."
            )
        merged["rule_scale"] = scale[0]  # checked below like a single number
    for key in ("C", "rule_scale", "context_scale"):
        value = merged[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"linear_params[{key!r}] must be a number > 0, got {value!r}.")
    ratio = merged["l1_ratio"]
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio <= 1:
        raise ValueError(
            f"linear_params['l1_ratio'] must be a number in [0, 1] (0: L2, 1: L1), got {ratio!r}."
        )
    for key, low, high in (
        ("n_quantiles", 10, None),
        ("max_iter", 1, None),
        ("rules", 0, None),
        ("rule_depth", 1, 6),
    ):
        value = merged[key]
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, np.integer))
            or value < low
            or (high is not None and value > high)
        ):
            limits = f">= {low}" if high is None else f"in [{low}, {high}]"
            hint = " (0: no rules)" if key == "rules" else ""
            raise ValueError(
                f"linear_params[{key!r}] must be an integer {limits}{hint}, got {value!r}."
            )
    if not isinstance(merged["rule_residual"], (bool, np.bool_)):
        raise ValueError(
            "linear_params['rule_residual'] must be True (grow the rule trees from the "
            "margin of the regression without rules) or False (from the base rate), got "
            f"{merged['rule_residual']!r}."
        )
    view, columns = _check_view("rule", merged["rule_view"], merged["rule_columns"])
    own_view, own_columns = _check_view("own", merged["own_view"], merged["own_columns"])
    if merged["context_scale"] != 1.0 and own_view is None and own_columns is None:
        raise ValueError(
            f"linear_params['context_scale'] = {merged['context_scale']!r} scales the columns "
            "outside the lesion's own ones; name those with 'own_view' (in an ensemble, e.g. "
            "'raw') or 'own_columns', or leave 'context_scale' at 1."
        )
    return {
        "C": float(merged["C"]),
        "n_quantiles": int(merged["n_quantiles"]),
        "max_iter": int(merged["max_iter"]),
        "tails": _check_tails(merged["tails"]),
        "rules": int(merged["rules"]),
        "rule_depth": int(merged["rule_depth"]),
        "rule_scale": (
            tuple(float(v) for v in scale) if isinstance(scale, (list, tuple)) else float(scale)
        ),
        "rule_view": view,
        "rule_columns": columns,
        "rule_residual": bool(merged["rule_residual"]),
        "context_scale": float(merged["context_scale"]),
        "own_view": own_view,
        "own_columns": own_columns,
        "l1_ratio": float(ratio),
    }


_COLUMNS_MEANING = {
    "rule": "the columns the rule trees may split on",
    "own": "the lesion's own columns, which keep their full weight under 'context_scale'",
}


def _check_view(prefix: str, view: Any, columns: Any) -> tuple[str | None, tuple[int, ...] | None]:
    """``<prefix>_view`` and ``<prefix>_columns`` checked: at most one of them given."""
    if view is not None and (not isinstance(view, str) or not view):
        raise ValueError(
            f"linear_params['{prefix}_view'] must be the name of a view (e.g. 'raw') or None, "
            f"got {view!r}."
        )
    checked = _check_columns(prefix, columns)
    if view is not None and checked is not None:
        raise ValueError(
            f"linear_params sets both '{prefix}_view' and '{prefix}_columns'; give one of "
            f"them (the ensemble turns '{prefix}_view' into '{prefix}_columns')."
        )
    return view, checked


def _check_view_columns(settings: Mapping[str, Any], prefix: str, n_columns: int) -> None:
    """``<prefix>_columns`` within X's ``n_columns``, and no ``<prefix>_view`` left to resolve."""
    if settings[f"{prefix}_view"] is not None:
        raise ValueError(
            f"linear_params['{prefix}_view'] = {settings[f'{prefix}_view']!r} names a view of an "
            f"ensemble; LinearScorer.fit takes the view's column indices as '{prefix}_columns'."
        )
    columns = settings[f"{prefix}_columns"]
    if columns is not None and columns[-1] >= n_columns:
        raise ValueError(
            f"linear_params['{prefix}_columns'] holds the index {columns[-1]}, out of range for "
            f"X with {n_columns} columns."
        )


def _check_columns(prefix: str, columns: Any) -> tuple[int, ...] | None:
    """``<prefix>_columns`` as a sorted tuple of distinct column indices, None, or a clear error."""
    if columns is None:
        return None
    values = [columns] if isinstance(columns, (int, np.integer)) else columns
    try:
        out = tuple(sorted(int(c) for c in values))
        valid = all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in values)
    except (TypeError, ValueError):
        out, valid = (), False
    if not valid or not out or len(set(out)) != len(out) or out[0] < 0:
        raise ValueError(
            f"linear_params['{prefix}_columns'] must be a non-empty list of distinct column "
            f"indices >= 0 ({_COLUMNS_MEANING[prefix]}) or None, got {columns!r}."
        )
    return out


def _check_tails(tails: Any) -> tuple[float, ...]:
    """``tails`` as a tuple of distinct thresholds in [0, 5], or a clear error."""
    values = [tails] if isinstance(tails, (int, float)) else tails
    try:
        out = tuple(sorted(float(t) for t in values))
    except (TypeError, ValueError):
        out = ()
        values = None
    if (
        values is None
        or any(isinstance(t, bool) for t in values)
        or len(set(out)) != len(out)
        or not all(0.0 <= t <= 5.0 for t in out)
    ):
        raise ValueError(
            f"linear_params['tails'] must be a list of distinct normal-score thresholds in "
            f"[0, 5] (e.g. [1.0]; [] for a purely linear effect per column), got {tails!r}."
        )
    return out


_BLOCK_ROWS = 32_768  # rows scored at once by mean_margin()
_FORMAT = "lesionboost-linear-3"  # what to_json writes
# -1: the same without "tails" (none); -2: without "rules" (none)
_READABLE = ("lesionboost-linear-1", "lesionboost-linear-2", _FORMAT)
_EDGE = 1e-7  # levels are clipped to [1e-7, 1 - 1e-7]: normal scores within about +-5.2


def _column_knots(values: np.ndarray, levels: np.ndarray) -> tuple[list[float], list[float]]:
    """Knots of one column: its quantile values (strictly increasing) and their normal scores."""
    from scipy.special import ndtri

    finite = values[~np.isnan(values)]
    if finite.size == 0:
        return [], []
    # Sorted first: numpy's selection of hundreds of order statistics is then one pass.
    quantiles = np.quantile(np.sort(finite), levels)
    unique, inverse = np.unique(quantiles, return_inverse=True)
    merged = np.bincount(inverse, weights=levels) / np.bincount(inverse)
    return unique.tolist(), ndtri(np.clip(merged, _EDGE, 1.0 - _EDGE)).tolist()


def _design_width(
    n_numeric: int, tails: Sequence[float], levels: Mapping[int, Sequence[float]]
) -> int:
    """Design columns: a score and two hinges per threshold for each numeric, one per level."""
    return (1 + 2 * len(tails)) * n_numeric + sum(len(v) for v in levels.values())


def _normal_scores(values: np.ndarray, knots: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Normal scores of ``values``, linear between the knots and flat beyond them; NaN -> 0."""
    xs, ys = knots
    if len(xs) < 2:  # constant or never observed: carries no information
        return np.zeros(values.shape[0])
    return np.nan_to_num(np.interp(values, xs, ys), nan=0.0)


class LinearScorer:
    """A fitted ``linear`` member: quantile-normal numeric columns and one-hot categoricals
    into a penalised (by default L2) logistic regression.

    Build one with :meth:`fit`; :meth:`margin` gives the log-odds and
    :meth:`contributions` each column's share of it (coefficient times the
    column's deviation from its training mean, exact for a linear model).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = np.column_stack([rng.normal(size=500), rng.integers(0, 3, 500)]).astype(np.float32)
    >>> y = (X[:, 0] + rng.normal(size=500) > 1).astype(int)
    >>> scorer = LinearScorer.fit(X, y, cat_idx=[1], params={"C": 1.0})
    >>> scorer.design(np.array([[0.3, 1.0]]))[0, 1:].tolist()  # one indicator per level
    [0.0, 1.0, 0.0]
    >>> bool(np.corrcoef(scorer.margin(X), X[:, 0])[0, 1] > 0.9)
    True
    >>> again = LinearScorer.from_json(scorer.to_json())
    >>> bool(np.allclose(again.margin(X), scorer.margin(X)))
    True
    """

    def __init__(
        self,
        *,
        n_features: int,
        numeric: Sequence[int],
        knots: Sequence[tuple[Sequence[float], Sequence[float]]],
        levels: Mapping[int, Sequence[float]],
        coef: np.ndarray,
        intercept: float,
        baseline: np.ndarray,
        tails: Sequence[float] = (),
        rules: Any = None,
        rule_scale: float | None = None,
    ) -> None:
        self.n_features = int(n_features)
        #: The rules as a LightGBM ``Booster`` whose leaves hold their coefficients, or None.
        self.rules = rules
        #: The ``rule_scale`` the rules were fitted with (the chosen one of several
        #: candidates); None without rules or in a file that does not record it.
        self.rule_scale = None if rule_scale is None else float(rule_scale)
        self.tails = _check_tails(list(tails))
        self.numeric = [int(i) for i in numeric]
        self.knots = [
            (np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)) for xs, ys in knots
        ]
        self.levels = {int(k): [float(v) for v in values] for k, values in levels.items()}
        self.coef = np.asarray(coef, dtype=np.float64)
        self.intercept = float(intercept)
        self.baseline = np.asarray(baseline, dtype=np.float64)
        if len(self.knots) != len(self.numeric) or any(
            xs.ndim != 1 or xs.shape != ys.shape or bool(np.any(np.diff(xs) <= 0))
            for xs, ys in self.knots
        ):
            raise ValueError(
                "linear member: every numeric column needs one knot list of increasing values "
                "and as many levels."
            )
        width = self.width
        if self.coef.shape != (width,) or self.baseline.shape != (width,):
            raise ValueError(
                f"linear member: {width} design columns but {self.coef.shape[0]} coefficients "
                f"and {self.baseline.shape[0]} baseline values."
            )

    @property
    def width(self) -> int:
        """Columns of the design matrix: each numeric's score and hinges, then indicators."""
        return _design_width(len(self.numeric), self.tails, self.levels)

    # ------------------------------------------------------------------ fit
    @classmethod
    def fit(
        cls,
        X: np.ndarray,
        y: np.ndarray,
        *,
        cat_idx: Sequence[int],
        params: Mapping[str, Any] | None = None,
        weight: np.ndarray | None = None,
        seed: int = 0,
    ) -> LinearScorer:
        """Fit on ``X`` (float, NaN = missing; ``cat_idx`` columns hold integer codes).

        ``seed`` seeds the rule trees' row and column subsampling and the L1 and
        elastic-net solvers' coordinate order (unused by an L2 fit without rules).
        """
        settings = check_linear_params(params or {})
        X = np.asarray(X, dtype=np.float64)
        if settings["rules"] > 0:
            _check_view_columns(settings, "rule", X.shape[1])
        _check_view_columns(settings, "own", X.shape[1])
        scale = settings["rule_scale"]
        if isinstance(scale, tuple):
            scale = (
                _choose_rule_scale(cls, X, y, cat_idx, settings, weight, seed)
                if settings["rules"] > 0
                else scale[0]  # unused without rules
            )
        return _Problem(cls, X, y, cat_idx, settings, weight, seed).solve(scale)

    def _context_mask(self, own_columns: Sequence[int] | None) -> np.ndarray:
        """Design columns (scores and hinges) of the numerics outside ``own_columns``."""
        own = set(own_columns or ())
        outside = np.array([column not in own for column in self.numeric], dtype=bool)
        mask = np.zeros(self.width, dtype=bool)
        n_numeric = len(self.numeric)
        for block in range(1 + 2 * len(self.tails)):
            mask[block * n_numeric : (block + 1) * n_numeric] = outside
        return mask

    # ------------------------------------------------------------------ predict
    def design(self, X: np.ndarray, threads: int | None = None) -> np.ndarray:
        """The model's input matrix for ``X``: the numerics' normal scores, their hinges
        (for each threshold ``t`` of ``tails``: every column's ``max(z - t, 0)``, then every
        column's ``max(-z - t, 0)``), then the indicators.

        ``threads``: columns transformed at once (``numpy.interp`` releases the GIL);
        ``None`` uses every core.
        """
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(
                f"linear member: X has shape {X.shape}, expected {self.n_features} columns."
            )
        out = np.empty((X.shape[0], self.width))
        n_numeric = len(self.numeric)

        def numeric_column(position: int) -> None:
            column = self.numeric[position]
            z = _normal_scores(X[:, column], self.knots[position])
            out[:, position] = z
            for k, threshold in enumerate(self.tails):
                upper = (1 + 2 * k) * n_numeric + position
                np.maximum(z - threshold, 0.0, out=out[:, upper])
                np.maximum(-z - threshold, 0.0, out=out[:, upper + n_numeric])

        workers = max(1, (os.cpu_count() or 1) if threads is None else int(threads))
        if workers > 1 and len(self.numeric) > 1 and X.shape[0] >= 10_000:
            with ThreadPoolExecutor(min(workers, len(self.numeric))) as pool:
                list(pool.map(numeric_column, range(len(self.numeric))))
        else:
            for position in range(len(self.numeric)):
                numeric_column(position)
        start = (1 + 2 * len(self.tails)) * n_numeric
        for index, values in self.levels.items():
            out[:, start : start + len(values)] = X[:, [index]] == np.asarray(values)[None, :]
            start += len(values)
        return out

    def margin(self, X: np.ndarray, threads: int | None = None) -> np.ndarray:
        """Log-odds of the positive class for every row of ``X``.

        The design matrix (:meth:`design`) times the coefficients, plus the intercept
        and, with rules, the rule trees' raw score; each column's share is looked up in
        one table (:func:`mean_margin`), so the design matrix is never built.
        """
        return mean_margin([self], X, threads)

    def column_shares(
        self,
    ) -> tuple[list[tuple[int, np.ndarray, np.ndarray]], dict[int, dict[float, float]]]:
        """Each input column's share of the log-odds as a table.

        A column's normal score and its hinges are piecewise linear in the column, so
        their weighted sum is too, with knots at the quantile knots and where the
        score crosses a hinge's threshold.

        Returns
        -------
        numeric : list of (int, ndarray, ndarray)
            ``(column, xs, values)`` for each numeric column with at least two knots:
            its share at ``xs``, linear in between, flat beyond the ends, 0 for a
            missing value (a column with fewer knots has no share).
        categorical : dict
            ``{column: {level: coefficient}}``; a missing or unseen level adds 0.
        """
        n_numeric = len(self.numeric)
        numeric = []
        for position, column in enumerate(self.numeric):
            xs, ys = self.knots[position]
            if len(xs) < 2:  # scores 0 everywhere: no share
                continue
            weights = self.coef[position::n_numeric][: 1 + 2 * len(self.tails)]
            breaks = [xs]
            for threshold in self.tails:  # where the score crosses +-threshold
                breaks.append(np.interp([threshold, -threshold], ys, xs))
            grid = np.unique(np.concatenate(breaks))
            z = np.interp(grid, xs, ys)
            share = weights[0] * z
            for k, threshold in enumerate(self.tails):
                share = share + weights[1 + 2 * k] * np.maximum(z - threshold, 0.0)
                share = share + weights[2 + 2 * k] * np.maximum(-z - threshold, 0.0)
            numeric.append((column, grid, share))
        categorical: dict[int, dict[float, float]] = {}
        start = (1 + 2 * len(self.tails)) * n_numeric
        for index, values in self.levels.items():
            coefficients = self.coef[start : start + len(values)].tolist()
            categorical[index] = dict(zip(values, coefficients, strict=True))
            start += len(values)
        return numeric, categorical

    def contributions(self, X: np.ndarray, threads: int | None = None) -> np.ndarray:
        """Per-row, per-input-column share of the log-odds, relative to the training mean.

        The rules' shares are their TreeSHAP values (LightGBM ``pred_contrib``),
        measured from their mean over the rule trees' training rows (:meth:`rule_baseline`).
        """
        terms = (self.design(X, threads) - self.baseline) * self.coef
        out = np.zeros((terms.shape[0], self.n_features))
        n_numeric = len(self.numeric)
        per_numeric = 1 + 2 * len(self.tails)
        out[:, self.numeric] = (
            terms[:, : per_numeric * n_numeric].reshape(-1, per_numeric, n_numeric).sum(axis=1)
        )
        start = per_numeric * n_numeric
        for index, values in self.levels.items():
            out[:, index] = terms[:, start : start + len(values)].sum(axis=1)
            start += len(values)
        if self.rules is not None:  # TreeSHAP of the rules, relative to their training mean
            shares = self.rules.predict(
                np.asarray(X, dtype=np.float32), pred_contrib=True, num_threads=_threads(threads)
            )
            out += shares[:, :-1]
        return out

    def rule_baseline(self) -> float:
        """The rules' mean log-odds over their training rows (0 without rules): with
        :attr:`baseline`, the reference :meth:`contributions` are measured from."""
        if self.rules is None:
            return 0.0
        probe = np.full((1, self.n_features), np.nan, dtype=np.float32)
        return float(self.rules.predict(probe, pred_contrib=True)[0, -1])

    # ------------------------------------------------------------------ JSON
    def to_json(self) -> str:
        """The fitted model as JSON text (what the model folder stores)."""
        return json.dumps(
            {
                "format": _FORMAT,
                "n_features": self.n_features,
                "tails": list(self.tails),
                "numeric": self.numeric,
                "knots": [[xs.tolist(), ys.tolist()] for xs, ys in self.knots],
                "levels": {str(k): v for k, v in self.levels.items()},
                "coef": self.coef.tolist(),
                "intercept": self.intercept,
                "baseline": self.baseline.tolist(),
                "rules": None if self.rules is None else self.rules.model_to_string(),
                "rule_scale": self.rule_scale,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> LinearScorer:
        """Rebuild a model written by :meth:`to_json`; a clear error for anything else."""
        state = json.loads(text)
        if not isinstance(state, dict) or state.get("format") not in _READABLE:
            raise ValueError(
                f"not a lesionboost linear member (format {' or '.join(map(repr, _READABLE))})"
            )
        return cls(
            n_features=state["n_features"],
            numeric=state["numeric"],
            knots=[(xs, ys) for xs, ys in state["knots"]],
            levels={int(k): v for k, v in state["levels"].items()},
            coef=np.asarray(state["coef"], dtype=np.float64),
            intercept=state["intercept"],
            baseline=np.asarray(state["baseline"], dtype=np.float64),
            tails=state.get("tails", []),
            rules=_load_rules(state.get("rules")),
            rule_scale=state.get("rule_scale"),
        )


class _Problem:
    """What a linear member's fit builds before its regression: the columns' knots and
    levels, the design matrix and, with rules, the trees and every row's leaves.

    None of it depends on ``rule_scale``, so the candidates of an inner choice
    share one per fold and differ only in :meth:`solve`.
    """

    def __init__(
        self,
        cls: type[LinearScorer],
        X: np.ndarray,
        y: np.ndarray,
        cat_idx: Sequence[int],
        settings: Mapping[str, Any],
        weight: np.ndarray | None,
        seed: int,
    ) -> None:
        self.cls, self.settings, self.weight, self.seed = cls, settings, weight, seed
        self.y = np.asarray(y)
        categorical = sorted({int(i) for i in cat_idx})
        numeric = [i for i in range(X.shape[1]) if i not in set(categorical)]
        grid = np.linspace(0.0, 1.0, min(settings["n_quantiles"], X.shape[0]))
        levels = {}
        for index in categorical:
            codes = X[:, index]
            levels[index] = np.unique(codes[~np.isnan(codes)]).tolist()
        self.width = _design_width(len(numeric), settings["tails"], levels)
        self.columns: dict[str, Any] = {
            "n_features": X.shape[1],
            "numeric": numeric,
            "knots": [_column_knots(X[:, i], grid) for i in numeric],
            "levels": levels,
            "tails": settings["tails"],
        }
        shell = cls(
            **self.columns, coef=np.zeros(self.width), intercept=0.0, baseline=np.zeros(self.width)
        )
        self.design = shell.design(X)
        self.baseline = np.average(self.design, axis=0, weights=weight)
        self.context = (
            shell._context_mask(settings["own_columns"])
            if settings["context_scale"] != 1.0
            else None
        )
        if self.context is not None:  # folded back into the coefficients after the fit
            self.design[:, self.context] *= settings["context_scale"]
        self.trees: Any = None
        if settings["rules"] > 0:
            start = None
            if settings["rule_residual"]:  # the trees model what the terms leave
                terms = _logistic_regression(settings, sparse_rules=False, seed=seed)
                terms.fit(self.design, self.y, sample_weight=weight)
                start = terms.decision_function(self.design)
            self.trees, self.leaves, self.n_leaves = _grow_rules(
                X, self.y, categorical, settings, seed, weight, init_score=start
            )

    def solve(self, scale: float, *, copy_rules: bool = False) -> LinearScorer:
        """The fitted member with rule indicators of value ``scale``. The rules' leaves
        take its coefficients; ``copy_rules`` writes them into a copy of the trees, so
        the problem can be solved again."""
        if self.trees is not None:
            # Hundreds of rule columns, one leaf per tree set in each row: a sparse
            # matrix for L-BFGS (which, unlike a Newton step, needs no dense Hessian)
            # costs a fraction of the dense one's products.
            inputs: Any = _stacked_design(self.design, self.leaves, self.n_leaves, scale)
        else:
            inputs = self.design
        settings = self.settings
        model = _logistic_regression(settings, sparse_rules=self.trees is not None, seed=self.seed)
        model.fit(inputs, self.y, sample_weight=self.weight)
        coef = model.coef_.ravel().astype(np.float64)
        own = coef[: self.width].copy()
        if self.context is not None:
            own[self.context] *= settings["context_scale"]
        scorer = self.cls(
            **self.columns, coef=own, intercept=float(model.intercept_[0]), baseline=self.baseline
        )
        if self.trees is not None:
            trees = self.trees
            if copy_rules:
                import lightgbm as lgb

                trees = lgb.Booster(model_str=trees.model_to_string())
            _write_rule_coefficients(trees, scale * coef[self.width :])
            scorer.rules, scorer.rule_scale = trees, float(scale)
        return scorer


def mean_margin(
    scorers: Sequence[LinearScorer], X: np.ndarray, threads: int | None = None
) -> np.ndarray:
    """The mean log-odds of ``scorers`` (the bags of one member) for every row of ``X``.

    Each scorer's margin is its intercept, one share per input column
    (:meth:`LinearScorer.column_shares`) and, with rules, the rule trees' raw
    score. The mean of piecewise-linear shares is piecewise linear on the union of
    their knots, so every numeric column is looked up once (one ``numpy.interp``)
    for all the scorers together, and no design matrix is built. Rows are scored in
    blocks of ``_BLOCK_ROWS`` spread over ``threads``; each block sums the columns
    in the same order, so the result does not depend on the thread count. The rule
    trees score all of ``X`` at once. Equal to the mean of the design matrices
    times the coefficients (plus intercepts and rules) up to rounding, about 1e-15
    of the column shares' size.

    Parameters
    ----------
    scorers : sequence of LinearScorer
        Fitted on the same columns (the same ``n_features``).
    X : ndarray of shape (n_samples, n_features)
        Float values, NaN for missing; categorical columns hold their codes.
    threads : int, optional
        Row blocks scored at once (``None``: every core).

    Returns
    -------
    ndarray of shape (n_samples,)

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(400, 2))
    >>> y = (X[:, 0] + rng.normal(size=400) > 1).astype(int)
    >>> bags = [LinearScorer.fit(X[i::2], y[i::2], cat_idx=[]) for i in (0, 1)]
    >>> via_design = [b.design(X) @ b.coef + b.intercept for b in bags]
    >>> bool(np.allclose(mean_margin(bags, X), np.mean(via_design, axis=0)))
    True
    """
    if not scorers:
        raise ValueError("mean_margin needs at least one linear scorer.")
    X = np.asarray(X)
    n_features = scorers[0].n_features
    if X.ndim != 2 or X.shape[1] != n_features:
        raise ValueError(f"linear member: X has shape {X.shape}, expected {n_features} columns.")
    count = len(scorers)
    pieces: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
    levels: dict[int, dict[float, float]] = {}
    for scorer in scorers:
        numeric, categorical = scorer.column_shares()
        for column, grid, share in numeric:
            pieces.setdefault(column, []).append((grid, share))
        for column, coefficients in categorical.items():
            merged = levels.setdefault(column, {})
            for level, value in coefficients.items():
                merged[level] = merged.get(level, 0.0) + value / count
    tables = []
    for column in sorted(pieces):
        grid = np.unique(np.concatenate([g for g, _ in pieces[column]]))
        share = sum(np.interp(grid, g, v) for g, v in pieces[column]) / count
        tables.append((column, grid, np.asarray(share, dtype=np.float64)))
    intercept = sum(scorer.intercept for scorer in scorers) / count
    out = np.empty(X.shape[0])

    def block(start: int) -> None:
        rows = X[start : start + _BLOCK_ROWS]
        total = np.full(rows.shape[0], intercept)
        for column, grid, share in tables:
            total += np.nan_to_num(np.interp(rows[:, column], grid, share), copy=False, nan=0.0)
        for column, merged in sorted(levels.items()):
            codes = rows[:, column]
            for level, value in merged.items():
                total[codes == level] += value
        out[start : start + _BLOCK_ROWS] = total

    starts = range(0, X.shape[0], _BLOCK_ROWS)
    workers = max(1, (os.cpu_count() or 1) if threads is None else int(threads))
    if workers > 1 and len(starts) > 1:
        with ThreadPoolExecutor(min(workers, len(starts))) as pool:
            list(pool.map(block, starts))
    else:
        for start in starts:
            block(start)
    ruled = [scorer.rules for scorer in scorers if scorer.rules is not None]
    if ruled:
        single = np.asarray(X, dtype=np.float32)
        for rules in ruled:
            out += rules.predict(single, raw_score=True, num_threads=_threads(threads)) / count
    return out


def _logistic_regression(settings: Mapping[str, Any], *, sparse_rules: bool, seed: int) -> Any:
    """scikit-learn's ``LogisticRegression`` for the member's penalty.

    L2 (``l1_ratio`` 0): Newton-Cholesky on the dense design, L-BFGS on the sparse one
    with rules. L1: liblinear, whose penalty also reaches the intercept, so the
    intercept's column is 100 (its penalty 1/100 of a coefficient's). Elastic net:
    SAGA. scikit-learn 1.8 names the penalty by ``l1_ratio`` alone; earlier
    versions also need ``penalty``.
    """
    from sklearn.linear_model import LogisticRegression

    ratio, C, max_iter = settings["l1_ratio"], settings["C"], settings["max_iter"]
    if ratio == 0.0:
        if sparse_rules:
            return LogisticRegression(C=C, max_iter=max_iter, solver="lbfgs", tol=1e-6)
        return LogisticRegression(C=C, max_iter=max_iter, solver="newton-cholesky")
    penalty: dict[str, Any] = {"l1_ratio": ratio}
    if inspect.signature(LogisticRegression).parameters["penalty"].default != "deprecated":
        penalty["penalty"] = "l1" if ratio == 1.0 else "elasticnet"
    if ratio == 1.0:
        solver: dict[str, Any] = {"solver": "liblinear", "intercept_scaling": 100.0, "tol": 1e-5}
    else:
        solver = {"solver": "saga", "tol": 1e-4}
    return LogisticRegression(C=C, max_iter=max_iter, random_state=seed, **penalty, **solver)


def _threads(threads: int | None) -> int:
    """LightGBM's ``num_threads`` for ``threads`` (``None``: every core, LightGBM's 0)."""
    return 0 if threads is None else max(1, int(threads))


def _grow_rules(
    X: np.ndarray,
    y: np.ndarray,
    categorical: Sequence[int],
    settings: Mapping[str, Any],
    seed: int,
    weight: np.ndarray | None,
    init_score: np.ndarray | None = None,
) -> tuple[Any, np.ndarray, int]:
    """The rule trees fitted to ``X``, each row's leaf of every tree as a column index
    into the rules' indicators (one per leaf of every tree, in tree order), and the
    number of indicators.

    ``init_score``: each row's log-odds to boost from (None: the base rate). It only
    shapes the trees' splits; the leaves' values are replaced by the rules'
    coefficients after the joint fit.
    """
    import lightgbm as lgb

    depth = settings["rule_depth"]
    params = {
        **_RULE_TREES,
        "num_leaves": 2**depth,
        "max_depth": depth,
        "seed": seed,
        "num_threads": _threads(None),
    }
    X32 = np.asarray(X, dtype=np.float32)
    train = X32
    if settings["rule_columns"] is not None:
        # Columns the rules may not use are all missing in the trees' training data:
        # LightGBM cannot split on them, and the trees keep X's column positions, so
        # they score (and explain) X itself.
        train = np.full_like(X32, np.nan)
        allowed = list(settings["rule_columns"])
        train[:, allowed] = X32[:, allowed]
    data = lgb.Dataset(
        train,
        label=y,
        weight=weight,
        init_score=init_score,
        categorical_feature=list(categorical),
    )
    trees = lgb.train(params, data, num_boost_round=settings["rules"])
    leaves = np.asarray(trees.predict(X32, pred_leaf=True), np.int64).reshape(X32.shape[0], -1)
    counts = [tree["num_leaves"] for tree in trees.dump_model()["tree_info"]]
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    return trees, leaves + offsets[None, : leaves.shape[1]], int(sum(counts))


def _stacked_design(design: np.ndarray, leaves: np.ndarray, n_leaves: int, scale: float) -> Any:
    """``[design, scale * rule indicators]`` as a CSR matrix, from one boolean selection.

    The design's nonzeros come first in each row (column order), then the row's leaf
    of every tree (column ``design.shape[1] + leaf``, value ``scale``): entry for entry
    the matrix ``scipy.sparse.hstack([csr_matrix(design), scale * indicators])``,
    without its intermediate COO matrices, so the solver takes the same path.
    """
    from scipy import sparse

    n_rows, width = design.shape
    n_trees = leaves.shape[1]
    size = n_rows * (width + n_trees)
    index_type = np.int32 if max(size, width + n_leaves) < 2**31 else np.int64
    # Row-major boolean selection keeps each row's entries in column order.
    keep = np.empty((n_rows, width + n_trees), dtype=bool)
    np.not_equal(design, 0.0, out=keep[:, :width])
    keep[:, width:] = True
    values = np.empty((n_rows, width + n_trees))
    values[:, :width] = design
    values[:, width:] = scale
    columns = np.empty((n_rows, width + n_trees), dtype=index_type)
    columns[:, :width] = np.arange(width)
    columns[:, width:] = leaves + width
    indptr = np.zeros(n_rows + 1, dtype=index_type)
    np.cumsum(keep.sum(axis=1), out=indptr[1:])
    return sparse.csr_matrix(
        (values[keep], columns[keep], indptr), shape=(n_rows, width + n_leaves)
    )


#: Inner folds of the choice among several ``rule_scale`` candidates.
_SCALE_FOLDS = 2


def _choose_rule_scale(
    cls: type[LinearScorer],
    X: np.ndarray,
    y: np.ndarray,
    cat_idx: Sequence[int],
    settings: Mapping[str, Any],
    weight: np.ndarray | None,
    seed: int,
) -> float:
    """The candidate ``rule_scale`` whose fits score the best pooled out-of-fold pAUC
    (above 80 % TPR) over :data:`_SCALE_FOLDS` stratified folds of the rows; ties go to
    the earlier candidate. Too few positives for the folds: the first candidate.

    The candidates of a fold share its design and rule trees (neither depends on
    the scale). The fits run one after another: liblinear (the L1 solver) draws
    its coordinate order from one process-wide generator, so fits on parallel
    threads would not repeat.
    """
    from sklearn.model_selection import StratifiedKFold

    from ..metrics import pauc_above_tpr

    y = np.asarray(y)
    candidates = settings["rule_scale"]
    if int(np.sum(y == 1)) < 2 * _SCALE_FOLDS or len(candidates) == 1:
        return float(candidates[0])
    folds = StratifiedKFold(_SCALE_FOLDS, shuffle=True, random_state=seed).split(X, y)
    margins = np.zeros((len(candidates), len(y)))
    for train, test in folds:
        part = None if weight is None else np.asarray(weight)[train]
        problem = _Problem(cls, X[train], y[train], cat_idx, settings, part, seed)
        for k, scale in enumerate(candidates):
            margins[k, test] = problem.solve(scale, copy_rules=True).margin(X[test])
    scores = [pauc_above_tpr(y, m) for m in margins]
    return float(candidates[int(np.argmax(scores))])


def _write_rule_coefficients(trees: Any, values: np.ndarray) -> None:
    """Set each leaf's output to its rule's coefficient, so the trees' raw score is the
    rules' share of the log-odds."""
    position = 0
    for index, tree in enumerate(trees.dump_model()["tree_info"]):
        for leaf in range(tree["num_leaves"]):
            trees.set_leaf_output(index, leaf, float(values[position]))
            position += 1


def _load_rules(text: Any) -> Any:
    """The rule trees stored as LightGBM model text, or None; a clear error for anything else."""
    if text is None:
        return None
    if not isinstance(text, str) or not text.startswith("tree"):
        raise ValueError("linear member: 'rules' must hold a LightGBM model in text format.")
    import lightgbm as lgb

    return lgb.Booster(model_str=text)
