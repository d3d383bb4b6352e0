"""GBDTEnsembleClassifier(offset_column=...): boosters trained from a column's logistic fit."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy.special import expit
from sklearn.linear_model import LogisticRegression

from lesionboost.ensemble._classifier import GBDTEnsembleClassifier
from lesionboost.ensemble._members import MEMBERS
from lesionboost.metrics import pauc_above_tpr

FAST = {
    "n_bags": 1,
    "n_jobs": 1,
    "neg_ratio": None,
    "lightgbm_params": {"n_estimators": 30, "min_data_in_leaf": 5, "learning_rate": 0.2},
    "xgboost_params": {"n_estimators": 30, "learning_rate": 0.2},
    "catboost_params": {"n_estimators": 30, "depth": 3, "learning_rate": 0.2},
}
BOOSTERS = [kind for kind in MEMBERS if MEMBERS[kind].takes_init_score]


def _data(n=4000, seed=0):
    """Labels from a strong additive score plus a thresholded corner of two other columns."""
    rng = np.random.default_rng(seed)
    score = rng.normal(size=n)
    x = rng.normal(size=(n, 3))
    corner = (x[:, 0] > 0.8) & (x[:, 1] > 0.8)
    logit = -3.0 + 1.8 * score + 2.0 * corner
    y = (rng.random(n) < expit(logit)).astype(int)
    frame = pl.DataFrame(
        {"score": score, **{f"x{i}": x[:, i] for i in range(3)}},
    ).with_columns(pl.Series("site", rng.choice(["arm", "leg"], n).tolist()))
    return frame, y


def _margins(model, frame):
    return model._member_margins(model._prepare(frame, fit=False))


@pytest.mark.parametrize("kind", BOOSTERS)
def test_a_booster_scores_its_trees_on_top_of_the_columns_logistic_fit(kind):
    frame, y = _data()
    model = GBDTEnsembleClassifier(**FAST, members=(kind,), offset_column="score").fit(frame, y)
    assert model.offset_column_ == 0
    # one bag of every row: the fit is the unpenalised logistic regression on the column
    reference = LogisticRegression(C=np.inf).fit(frame.select("score").to_numpy(), y)
    (intercept, slope) = model.offset_fits_[0]
    assert slope == pytest.approx(reference.coef_[0, 0], rel=1e-3)
    assert intercept == pytest.approx(reference.intercept_[0], rel=1e-3)
    # the member's margin is its booster's own score plus that starting margin
    matrix = model._prepare(frame, fit=False)
    adapter = MEMBERS[kind]
    own = adapter.margin(model.boosters_[kind][0], adapter.prepare(matrix, [4], 1), 1)
    start = intercept + slope * frame["score"].to_numpy()
    np.testing.assert_allclose(_margins(model, frame)[kind], own + start, rtol=1e-6, atol=1e-6)
    # the trees were trained from that margin: with the score's effect given, what is
    # left for them is the corner, so their own scores vary far less than a plain fit's
    plain = GBDTEnsembleClassifier(**FAST, members=(kind,)).fit(frame, y)
    assert own.std() < 0.6 * _margins(plain, frame)[kind].std()
    corner = frame["x0"].to_numpy() > 0.8
    corner &= frame["x1"].to_numpy() > 0.8
    assert own[corner].mean() > own[~corner].mean() + 0.5


def test_the_offset_ranks_better_where_the_column_carries_an_additive_effect():
    # about 90 positives among 10,000 rows and ten noise columns, LightGBM at its
    # defaults: the trees rebuild the score's steep effect in coarse steps
    def data(n, seed):
        rng = np.random.default_rng(seed)
        score, x = rng.normal(size=n), rng.normal(size=(n, 10))
        corner = (x[:, 0] > 0.8) & (x[:, 1] > 0.8)
        y = (rng.random(n) < expit(-7.5 + 2.5 * score + 2.0 * corner)).astype(int)
        return pl.DataFrame({"score": score, **{f"x{i}": x[:, i] for i in range(10)}}), y

    (frame, y), (test, y_test) = data(10_000, 4), data(100_000, 99)
    params = {"members": ("lightgbm",), "n_bags": 1, "n_jobs": 1}
    plain = GBDTEnsembleClassifier(**params).fit(frame, y)
    offset = GBDTEnsembleClassifier(**params, offset_column="score").fit(frame, y)
    gain = pauc_above_tpr(y_test, offset.decision_function(test)) - pauc_above_tpr(
        y_test, plain.decision_function(test)
    )
    assert gain > 0.004


def test_the_linear_member_and_a_fit_without_the_option_are_unchanged():
    frame, y = _data(n=1500)
    linear = {"members": ("linear",), "n_bags": 1, "neg_ratio": None}
    np.testing.assert_array_equal(
        GBDTEnsembleClassifier(**linear, offset_column="score").fit(frame, y).predict_proba(frame),
        GBDTEnsembleClassifier(**linear).fit(frame, y).predict_proba(frame),
    )
    model = GBDTEnsembleClassifier(**FAST, members=("lightgbm",)).fit(frame, y)
    assert model.offset_column_ is None and model.offset_fits_ == []


def test_every_bag_fits_its_own_offset_and_the_margin_adds_their_mean():
    frame, y = _data(n=3000)
    model = GBDTEnsembleClassifier(
        **{**FAST, "n_bags": 3, "neg_ratio": 0.5}, members=("lightgbm",), offset_column=0
    ).fit(frame, y)
    fits = np.asarray(model.offset_fits_)
    assert fits.shape == (3, 2) and len(set(fits[:, 1])) == 3  # each bag its own rows
    matrix = model._prepare(frame, fit=False)
    adapter = MEMBERS["lightgbm"]
    own = adapter.mean_margin(model.boosters_["lightgbm"], matrix, 1)
    expected = own + fits[:, 0].mean() + fits[:, 1].mean() * frame["score"].to_numpy()
    np.testing.assert_allclose(_margins(model, frame)["lightgbm"], expected, atol=1e-5)


def test_missing_values_of_the_column_take_its_training_mean():
    frame, y = _data(n=2000)
    holes = frame.with_columns(
        pl.when(pl.col("x2") > 1.0).then(None).otherwise(pl.col("score")).alias("score")
    )
    model = GBDTEnsembleClassifier(**FAST, members=("lightgbm",), offset_column="score")
    model.fit(holes, y)
    assert model.offset_center_ == pytest.approx(holes["score"].mean())
    matrix = model._prepare(holes, fit=False)
    filled = np.nan_to_num(matrix[:, 0].astype(np.float64), nan=model.offset_center_)
    np.testing.assert_allclose(model._offset_values(matrix), filled)
    assert np.isfinite(model.decision_function(holes)).all()


def test_contributions_give_the_column_its_starting_margin():
    frame, y = _data(n=2000)
    model = GBDTEnsembleClassifier(**FAST, members=("lightgbm",), offset_column="score")
    model.fit(frame, y)
    contributions = model.feature_contributions(frame)
    margin = _margins(model, frame)["lightgbm"]
    bias = margin - contributions.sum(axis=1)
    np.testing.assert_allclose(bias, bias[0], atol=1e-6)  # still margin = bias + sum
    assert np.argmax(np.abs(contributions).mean(axis=0)) == 0


@pytest.mark.parametrize(
    ("column", "message"),
    [
        ("nope", r"offset_column='nope' is not a column of X"),
        (9, r"offset_column=9 is out of range for X with 5 columns"),
        ("site", r"offset_column='site' is categorical"),
        ("empty", r"offset_column='empty' has no value in X"),
    ],
)
def test_offset_column_errors_name_the_column_and_the_fix(column, message):
    frame, y = _data(n=300)
    if column == "empty":
        frame = frame.with_columns(pl.lit(None, dtype=pl.Float64).alias("empty"))
    with pytest.raises(ValueError, match=message):
        GBDTEnsembleClassifier(**FAST, members=("lightgbm",), offset_column=column).fit(frame, y)


def test_a_constant_column_starts_every_row_at_the_base_rate():
    frame, y = _data(n=2000)
    frame = frame.with_columns(pl.lit(2.0).alias("flat"))
    model = GBDTEnsembleClassifier(**FAST, members=("lightgbm",), offset_column="flat")
    (intercept, slope) = model.fit(frame, y).offset_fits_[0]
    assert slope == 0.0
    assert intercept == pytest.approx(np.log(y.mean() / (1 - y.mean())))
