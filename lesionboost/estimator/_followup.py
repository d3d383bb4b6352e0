"""The follow-up score: how much a lesion looks like the ones clinics follow up.

In SLICE-3D a benign lesion carries a ``lesion_id`` when a clinician flagged it
for follow-up (about 5 % of benign lesions, some 20,000 in the full training set,
against some 400 cancers). Cancers look like such lesions, so a model of "this
benign lesion was followed up" learns a direction of the lesion's own columns from
fifty times more labelled lesions than the cancers give, and its score is a
feature that malignancy models can use with one coefficient instead of learning
that direction again (the 7th-place ISIC 2024 solution used ``lesion_id`` as a
label in this spirit).

:class:`FollowupModel` is an L2 logistic regression
(:class:`~lesionboost.ensemble.LinearScorer`: quantile normal scores of the raw
numeric columns, an "is exactly 0" flag per zero-inflated column, one indicator
per level of each categorical column) fitted on benign lesions only, with every
followed-up lesion and at most :data:`UNFOLLOWED_PER_FOLLOWED` unfollowed ones
per followed one (the slopes of a logistic model do not depend on how either
class is sampled; the sampling shifts its intercept by a constant).
``lesion_id`` itself never becomes a feature: :func:`cross_fitted_followup`
scores each training lesion with a model fitted on the patients of the other
inner fold only, and new lesions with a model fitted on all of them, as stacked
features are built; the fits differ by their data, so on small data the training
lesions' scores vary more than those of new lesions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from ..ensemble import LinearScorer
from ..exceptions import SchemaError
from ..schema import CATEGORICAL_COLUMNS, NUMERIC_COLUMNS

__all__ = [
    "FOLLOWUP_COLUMN",
    "MIN_FOLLOWED",
    "UNFOLLOWED_PER_FOLLOWED",
    "FollowupModel",
    "cross_fitted_followup",
    "followed_up",
    "inner_folds",
]

#: Name of the feature column that holds the follow-up score.
FOLLOWUP_COLUMN = "followup_logit"
#: The score column's name in model folders that do not store it (format 3).
_UNNAMED_COLUMN = "followup_score"
#: Fewest followed-up benign lesions (and unfollowed ones) a follow-up model is
#: fitted on; ``followup="auto"`` goes without the score below it.
MIN_FOLLOWED = 20
#: Unfollowed benign lesions kept per followed-up one when fitting.
UNFOLLOWED_PER_FOLLOWED = 4
#: Patient folds inside the training data for the training lesions' scores.
INNER_FOLDS = 2
#: The logistic regression's inverse L2 strength.
FOLLOWUP_C = 0.1
#: Share of exact zeros from which a numeric column gets an "is 0" flag.
_ZERO_SHARE = 0.01
_FORMAT = "lesionboost-followup-1"


def followed_up(frame: pl.DataFrame, followed: Any, *, what: str) -> np.ndarray | None:
    """One bool per lesion: followed up (``followed``, else ``lesion_id`` is set); None
    when neither is given."""
    if followed is None:
        if "lesion_id" not in frame.columns:
            return None
        return frame.get_column("lesion_id").is_not_null().to_numpy()
    values = np.asarray(followed.to_numpy() if isinstance(followed, pl.Series) else followed)
    if values.ndim != 1 or values.shape[0] != frame.height:
        raise ValueError(
            f"{what}: followed_up has shape {values.shape} but X has {frame.height} rows; pass "
            "one bool per lesion, e.g. train['lesion_id'].is_not_null()."
        )
    hint = "pass one bool per lesion, e.g. train['lesion_id'].is_not_null()"
    if values.dtype.kind not in "biuf":
        raise ValueError(
            f"{what}: followed_up must hold booleans, got {values.dtype} values; {hint}."
        )
    if values.dtype.kind == "f" and bool(np.isnan(values).any()):
        raise ValueError(f"{what}: followed_up holds missing values; {hint}.")
    unexpected = sorted(set(np.unique(values).tolist()) - {0, 1})
    if unexpected:
        raise ValueError(f"{what}: followed_up must hold booleans (or 0/1), got {unexpected[:5]}.")
    return values.astype(bool)


class FollowupModel:
    """A fitted follow-up model: which raw columns it reads and its logistic regression.

    Build one with :meth:`fit`; :meth:`score` gives the log-odds of follow-up,
    which the estimator adds to the lesion's columns as :attr:`column`
    (:data:`FOLLOWUP_COLUMN`; model folders of format 3 named it ``followup_score``).

    Examples
    --------
    >>> import numpy as np
    >>> import lesionboost as lb
    >>> train = lb.simulate_slice3d(40, seed=0).train
    >>> benign = train.get_column("target").to_numpy() == 0
    >>> followed = train.get_column("lesion_id").is_not_null().to_numpy()
    >>> model = FollowupModel.fit(train, followed, benign)
    >>> score = model.score(train)
    >>> bool(score[followed & benign].mean() > score[~followed & benign].mean())
    True
    >>> again = FollowupModel.from_dict(model.to_dict())
    >>> bool(np.array_equal(again.score(train), score))
    True
    """

    def __init__(
        self,
        *,
        numeric: Sequence[str],
        zero_flags: Sequence[str],
        levels: Mapping[str, Sequence[str]],
        scorer: LinearScorer,
        column: str | None = None,
    ) -> None:
        self.column = FOLLOWUP_COLUMN if column is None else str(column)
        self.numeric = [str(c) for c in numeric]
        self.zero_flags = [str(c) for c in zero_flags]
        self.levels = {str(k): [str(v) for v in values] for k, values in levels.items()}
        self.scorer = scorer
        width = len(self.numeric) + len(self.zero_flags) + len(self.levels)
        if scorer.n_features != width or any(c not in self.numeric for c in self.zero_flags):
            raise ValueError(
                f"follow-up model: {width} input columns but the regression takes "
                f"{scorer.n_features}, or a zero flag names a column it does not read."
            )

    @classmethod
    def fit(
        cls, frame: pl.DataFrame, followed: np.ndarray, rows: np.ndarray, *, seed: int = 0
    ) -> FollowupModel:
        """Fit on the lesions ``rows`` (a bool mask of benign lesions) of ``frame``."""
        rows = np.flatnonzero(rows)
        kept = _sampled(rows, followed[rows], seed)
        fit_frame = frame[kept]
        numeric = [c for c in NUMERIC_COLUMNS if c in frame.columns]
        zeros = fit_frame.select(
            [(pl.col(c).cast(pl.Float64) == 0).mean().alias(c) for c in numeric]
        ).row(0, named=True)
        zero_flags = [c for c in numeric if _ZERO_SHARE <= (zeros[c] or 0.0) < 1 - _ZERO_SHARE]
        levels = {
            c: sorted(fit_frame.get_column(c).cast(pl.String).drop_nulls().unique().to_list())
            for c in CATEGORICAL_COLUMNS
            if c in frame.columns
        }
        shell = cls.__new__(cls)
        shell.numeric, shell.zero_flags, shell.levels = numeric, zero_flags, levels
        X = shell._design(fit_frame)
        cat_idx = list(range(len(numeric) + len(zero_flags), X.shape[1]))
        scorer = LinearScorer.fit(X, followed[kept], cat_idx=cat_idx, params={"C": FOLLOWUP_C})
        return cls(numeric=numeric, zero_flags=zero_flags, levels=levels, scorer=scorer)

    def _design(self, frame: pl.DataFrame) -> np.ndarray:
        """Numeric columns, their zero flags, then categorical codes (unseen: NaN)."""
        missing = [c for c in (*self.numeric, *self.levels) if c not in frame.columns]
        if missing:
            raise SchemaError(
                f"the follow-up model reads the column(s) {missing}, which X lacks; pass the "
                "SLICE-3D metadata columns the model was fitted on."
            )
        numeric = [pl.col(c).cast(pl.Float64).fill_nan(None).alias(c) for c in self.numeric]
        flags = [
            (pl.col(c).cast(pl.Float64) == 0).cast(pl.Float64).alias(f"{c}__is_0")
            for c in self.zero_flags
        ]
        codes = [
            pl.col(c)
            .cast(pl.String)
            .replace_strict(levels, list(range(len(levels))), default=None, return_dtype=pl.Float64)
            .alias(c)
            for c, levels in self.levels.items()
        ]
        return frame.select([*numeric, *flags, *codes]).to_numpy().astype(np.float64)

    def score(self, frame: pl.DataFrame, threads: int | None = None) -> np.ndarray:
        """Log-odds of follow-up for every lesion of ``frame`` (rows over ``threads``)."""
        return self.scorer.margin(self._design(frame), threads)

    def to_dict(self) -> dict[str, Any]:
        """The model as a JSON-ready mapping (what a model folder stores)."""
        return {
            "format": _FORMAT,
            "column": self.column,
            "numeric": self.numeric,
            "zero_flags": self.zero_flags,
            "levels": self.levels,
            "scorer": self.scorer.to_json(),
        }

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> FollowupModel:
        """Rebuild a model written by :meth:`to_dict`; a clear error for anything else."""
        if not isinstance(state, Mapping) or state.get("format") != _FORMAT:
            raise ValueError(f"not a lesionboost follow-up model (format {_FORMAT!r})")
        return cls(
            numeric=state["numeric"],
            zero_flags=state["zero_flags"],
            levels=state["levels"],
            scorer=LinearScorer.from_json(state["scorer"]),
            column=state.get("column", _UNNAMED_COLUMN),
        )


def _sampled(rows: np.ndarray, followed: np.ndarray, seed: int) -> np.ndarray:
    """``rows``: every followed one, at most :data:`UNFOLLOWED_PER_FOLLOWED` others each."""
    others = rows[~followed]
    limit = UNFOLLOWED_PER_FOLLOWED * int(followed.sum())
    if len(others) > limit:
        others = np.random.default_rng(seed).choice(others, size=limit, replace=False)
    return np.sort(np.concatenate([rows[followed], others]))


def inner_folds(
    frame: pl.DataFrame, labels: np.ndarray, followed: np.ndarray, *, seed: int = 0
) -> np.ndarray:
    """The patient fold (0 to :data:`INNER_FOLDS` - 1) of every lesion of ``frame``.

    scikit-learn's :class:`~sklearn.model_selection.GroupKFold` over the patients,
    shuffled by ``seed``.

    Raises
    ------
    ValueError
        Fewer patients than folds, or a fold whose other patients have no
        followed-up benign lesion, or no other benign one, to fit on.
    """
    from sklearn.model_selection import GroupKFold

    patients = frame.get_column("patient_id").rank("dense").to_numpy()  # integer codes
    if np.unique(patients).size < INNER_FOLDS:
        raise ValueError(
            f"the follow-up score needs at least {INNER_FOLDS} patients, to score each one's "
            "lesions with a model fitted on the others; pass followup=False."
        )
    folds = np.empty(frame.height, dtype=np.int64)
    splitter = GroupKFold(n_splits=INNER_FOLDS, shuffle=True, random_state=seed)
    for fold, (_, held) in enumerate(splitter.split(patients, groups=patients)):
        folds[held] = fold
    benign = np.asarray(labels) == 0
    for fold in range(INNER_FOLDS):
        rest = benign & (folds != fold)
        if not (followed[rest].any() and (~followed[rest]).any()):
            raise ValueError(
                "the follow-up score needs followed-up and other benign lesions among the "
                f"patients outside each of its {INNER_FOLDS} patient folds; these data have "
                "them in too few patients. Pass followup=False."
            )
    return folds


def cross_fitted_followup(
    frame: pl.DataFrame,
    labels: np.ndarray,
    followed: np.ndarray,
    *,
    seed: int = 0,
    threads: int | None = None,
    folds: np.ndarray | None = None,
) -> tuple[FollowupModel, np.ndarray]:
    """The follow-up model of ``frame``'s benign lesions, and every lesion's score.

    Each lesion of ``frame`` is scored by a model fitted on the benign lesions of
    other patients only (:data:`INNER_FOLDS` patient folds, scikit-learn's
    :class:`~sklearn.model_selection.GroupKFold` shuffled by ``seed``); the model
    returned, fitted on all benign lesions, scores new lesions. ``folds``: those
    patient folds when already drawn by :func:`inner_folds` with the same ``seed``.

    Raises
    ------
    ValueError
        Fewer than :data:`MIN_FOLLOWED` benign lesions are followed up, or fewer
        are not, or one inner fold leaves no followed-up (or no other) benign lesion
        of other patients to fit on (:func:`inner_folds`).
    """
    benign = np.asarray(labels) == 0
    n_followed = int((followed & benign).sum())
    n_other = int((~followed & benign).sum())
    if min(n_followed, n_other) < MIN_FOLLOWED:
        raise ValueError(
            f"the follow-up score needs at least {MIN_FOLLOWED} benign lesions with a lesion_id "
            f"and as many without; X has {n_followed} and {n_other}. Pass followup=False, or "
            "training data with its lesion_id column."
        )
    scores = np.empty(frame.height)
    if folds is None:
        folds = inner_folds(frame, labels, followed, seed=seed)
    for fold in range(INNER_FOLDS):
        held = folds == fold
        model = FollowupModel.fit(frame, followed, benign & ~held, seed=seed + fold)
        scores[held] = model.score(frame.filter(pl.Series(held)), threads)
    return FollowupModel.fit(frame, followed, benign, seed=seed), scores
