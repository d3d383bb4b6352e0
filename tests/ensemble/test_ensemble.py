"""GBDTEnsembleClassifier: the scikit-learn contract, inputs, sampling, blending, determinism."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import polars as pl
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from lesionboost.ensemble._classifier import GBDTEnsembleClassifier, _piecewise, _rank_knots
from lesionboost.ensemble._members import MEMBER_KINDS, MEMBERS, resolve_threads
from lesionboost.metrics import pauc_above_tpr

# Small boosters keep every fit in this file well under a second.
FAST = {
    "n_bags": 1,
    "n_jobs": 1,
    "lightgbm_params": {
        "n_estimators": 15,
        "min_data_in_leaf": 2,
        "min_data_in_bin": 1,
        "learning_rate": 0.3,
        "scale_pos_weight": 1.0,
    },
    "xgboost_params": {"n_estimators": 15, "learning_rate": 0.3, "scale_pos_weight": 1.0},
    "catboost_params": {
        "n_estimators": 15,
        "depth": 3,
        "learning_rate": 0.3,
        "scale_pos_weight": 1.0,
        "border_count": 32,
    },
}


def _fast(**overrides):
    return GBDTEnsembleClassifier(**{**FAST, **overrides})


# neg_ratio=None: the common checks use balanced toy data where downsampling is moot.
#: Expected failures of the scikit-learn checks, each with its reason.
EXPECTED_FAILED_CHECKS = {
    "check_sample_weight_equivalence_on_dense_data": (
        "a weight of 2 is not a duplicated row for LightGBM and CatBoost: "
        "min_data_in_leaf and their feature bins count rows, so the trees differ "
        "(XGBoost alone passes; the weighted odds are honoured, see test_sample_weight_*)"
    ),
}


@parametrize_with_checks(
    [_fast(neg_ratio=None)], expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def _rare_data(n=3000, seed=0, rate_shift=-4.0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6)).astype(np.float32)
    site = rng.choice(["arm", "leg", "torso", None], n)
    logit = rate_shift + 1.6 * X[:, 0] + 0.8 * X[:, 1] + 1.2 * (site == "arm")
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    frame = pl.DataFrame({f"x{i}": X[:, i] for i in range(6)}).with_columns(
        pl.Series("site", site.tolist(), dtype=pl.String)
    )
    return frame, y


def test_polars_text_column_is_native_categorical_with_unseen_code():
    frame, y = _rare_data()
    model = _fast().fit(frame, y)
    assert model.categorical_features_ == [6]
    assert model.category_maps_ == {6: ["arm", "leg", "torso"]}
    assert list(model.feature_names_in_) == frame.columns
    unseen = frame.head(5).with_columns(pl.lit("scalp").alias("site"))
    missing = frame.head(5).with_columns(pl.lit(None, dtype=pl.String).alias("site"))
    # unseen levels share code 1, missing has code 0: both predict, and differently from 'arm'
    codes = model._prepare(pl.concat([unseen.head(1), missing.head(1)]), fit=False)[:, 6]
    np.testing.assert_array_equal(codes, [1.0, 0.0])
    p_unseen = model.predict_proba(unseen)[:, 1]
    p_arm = model.predict_proba(frame.head(5).with_columns(pl.lit("arm").alias("site")))[:, 1]
    assert np.all(np.isfinite(p_unseen)) and not np.array_equal(p_unseen, p_arm)
    assert model.predict_proba(missing).shape == (5, 2)


def test_pandas_category_dtype_matches_polars_strings():
    frame, y = _rare_data()
    pandas_frame = frame.to_pandas()
    pandas_frame["site"] = pandas_frame["site"].astype("category")
    from_polars = _fast().fit(frame, y).predict_proba(frame)
    from_pandas = _fast().fit(pandas_frame, y).predict_proba(pandas_frame)
    np.testing.assert_array_equal(from_polars, from_pandas)


def test_explicit_integer_code_columns():
    frame, y = _rare_data()
    codes = frame.with_columns(
        pl.col("site").replace_strict(
            {"arm": 2, "leg": 3, "torso": 4}, default=0, return_dtype=pl.Int32
        )
    )
    model = _fast(categorical_features=["site"]).fit(codes, y)
    assert model.categorical_features_ == [6] and model.category_maps_ == {}
    bad = codes.with_columns(pl.lit(-3, dtype=pl.Int32).alias("site"))
    with pytest.raises(ValueError, match="'site'.*non-negative integer codes"):
        model.predict(bad)
    # arrays take indices
    array_model = _fast(categorical_features=[6]).fit(codes.to_numpy(), y)
    assert array_model.categorical_features_ == [6]
    with pytest.raises(ValueError, match="names columns, but X is an array"):
        _fast(categorical_features=["site"]).fit(codes.to_numpy(), y)


def test_text_column_not_declared_categorical_is_an_error():
    frame, y = _rare_data()
    with pytest.raises(ValueError, match=r"\['site'\] hold text"):
        _fast(categorical_features=[]).fit(frame, y)
    with pytest.raises(ValueError, match="does not have"):
        _fast(categorical_features=["nope"]).fit(frame, y)


def test_nan_is_allowed_inf_is_not():
    frame, y = _rare_data()
    with_nan = frame.with_columns(
        pl.when(pl.col("x1") > 1).then(None).otherwise(pl.col("x1")).alias("x1")
    )
    model = _fast().fit(with_nan, y)
    assert np.isfinite(model.predict_proba(with_nan)).all()
    with pytest.raises(ValueError, match="infinity"):
        model.predict(with_nan.with_columns(pl.lit(float("inf")).alias("x0")))


def test_downsampling_and_oversampling_sizes():
    frame, y = _rare_data(n=4000, rate_shift=-6.0)
    n_pos = int(y.sum())
    assert 20 * n_pos < len(y) - n_pos
    model = _fast(neg_ratio=0.1, pos_oversample=2.0, n_bags=2).fit(frame, y)
    assert model.sampling_["bags"] == [[2 * n_pos, 20 * n_pos]] * 2
    assert model.sampling_["n_positive"] == n_pos
    everything = _fast(neg_ratio=None).fit(frame, y)
    assert everything.sampling_["bags"] == [[n_pos, len(y) - n_pos]]
    # 1:1000 asks for more negatives than exist: all are kept
    capped = _fast(neg_ratio=0.001).fit(frame, y)
    assert capped.sampling_["bags"] == [[n_pos, len(y) - n_pos]]


def test_offsets_undo_resampling_so_probabilities_stay_calibrated():
    frame, y = _rare_data(n=20000, rate_shift=-5.0)
    model = _fast(
        neg_ratio=0.05,
        pos_oversample=2.0,
        members=("lightgbm",),
        lightgbm_params={"n_estimators": 60, "learning_rate": 0.1, "scale_pos_weight": 2.0},
    ).fit(frame, y)
    kept = model.sampling_["bags"][0][1] / (len(y) - y.sum())
    assert model.offsets_["lightgbm"] == pytest.approx(np.log(kept) - np.log(2.0) - np.log(2.0))
    mean_p = model.predict_proba(frame)[:, 1].mean()
    assert mean_p == pytest.approx(y.mean(), rel=0.35)  # uncorrected it would be ~10x higher


@pytest.mark.parametrize("member", ["lightgbm", "xgboost", "catboost", "linear"])
def test_sample_weight_of_ones_changes_nothing_and_other_weights_reach_the_member(member):
    frame, y = _rare_data()
    plain = _fast(members=(member,), neg_ratio=0.2).fit(frame, y)
    ones = _fast(members=(member,), neg_ratio=0.2).fit(frame, y, sample_weight=np.ones(len(y)))
    np.testing.assert_array_equal(plain.decision_function(frame), ones.decision_function(frame))
    assert plain.offsets_ == ones.offsets_
    rng = np.random.default_rng(1)
    weighted = _fast(members=(member,), neg_ratio=0.2).fit(
        frame, y, sample_weight=rng.uniform(0.1, 3.0, len(y))
    )
    assert not np.array_equal(plain.decision_function(frame), weighted.decision_function(frame))


def test_sample_weight_probabilities_are_those_of_the_weighted_population():
    # Positives weighted 4, negatives 0.5-2: the offsets must undo the downsampling
    # in weight (in rows they would be off by the kept negatives' mean weight).
    frame, y = _rare_data(n=20000, rate_shift=-5.0)
    rng = np.random.default_rng(3)
    weight = np.where(y == 1, 4.0, rng.choice([0.5, 2.0], len(y)))
    weight[(y == 0) & (frame["x0"].to_numpy() > 1.0)] = 2.0  # weights tied to the signal
    model = _fast(
        neg_ratio=0.2,
        members=("lightgbm",),
        n_bags=2,
        pos_oversample=1.5,
        lightgbm_params={"n_estimators": 60, "learning_rate": 0.1, "scale_pos_weight": 2.0},
    ).fit(frame, y, sample_weight=weight)
    weighted_prevalence = weight[y == 1].sum() / weight.sum()
    mean_p = np.average(model.predict_proba(frame)[:, 1], weights=weight)
    assert mean_p == pytest.approx(weighted_prevalence, rel=0.15)
    # the stored offset is the bags' mean log-odds shift in weight, minus scale_pos_weight
    sampling = model.sampling_
    assert sampling["weighted"] and len(sampling["bag_weights"]) == 2
    total_pos, total_neg = sampling["weight"]
    expected = np.mean(
        [np.log(neg / total_neg) - np.log(pos / total_pos) for pos, neg in sampling["bag_weights"]]
    ) - np.log(2.0)
    assert model.offsets_["lightgbm"] == pytest.approx(expected)
    assert sampling["bags"][0][1] < (y == 0).sum()  # the negatives were downsampled


def test_zero_weights_remove_rows_and_scale_does_not_matter():
    frame, y = _rare_data()
    rng = np.random.default_rng(4)
    weight = rng.uniform(0.5, 2.0, len(y))
    dropped = rng.random(len(y)) < 0.3
    zeroed = _fast(neg_ratio=0.2).fit(frame, y, sample_weight=np.where(dropped, 0.0, weight))
    keep = pl.Series(~dropped)
    removed = _fast(neg_ratio=0.2).fit(
        frame.filter(keep), y[~dropped], sample_weight=weight[~dropped]
    )
    np.testing.assert_array_equal(zeroed.decision_function(frame), removed.decision_function(frame))
    scaled = _fast(neg_ratio=0.2).fit(frame, y, sample_weight=0.01 * weight)
    plain = _fast(neg_ratio=0.2).fit(frame, y, sample_weight=weight)
    np.testing.assert_allclose(
        scaled.decision_function(frame), plain.decision_function(frame), rtol=1e-6, atol=1e-6
    )


def test_sample_weight_errors_name_the_problem():
    frame, y = _rare_data()
    with pytest.raises(ValueError, match="negative class with a total weight of 0"):
        _fast().fit(frame, y, sample_weight=y.astype(float))
    with pytest.raises(ValueError, match="Negative values in data passed to `sample_weight`"):
        _fast().fit(frame, y, sample_weight=np.where(y == 1, 1.0, -1.0))
    with pytest.raises(ValueError, match="sample_weight"):
        _fast().fit(frame, y, sample_weight=np.ones(len(y) - 1))


@pytest.mark.parametrize("blend", ["rank", "mean"])
def test_predict_decision_and_proba_agree(blend):
    frame, y = _rare_data()
    model = _fast(blend=blend).fit(frame, y)
    decision = model.decision_function(frame)
    proba = model.predict_proba(frame)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert np.array_equal(
        np.argsort(decision, kind="stable"), np.argsort(proba[:, 1], kind="stable")
    )
    np.testing.assert_array_equal(model.predict(frame), (decision > 0).astype(int))
    # one row scored alone gets exactly the score it gets in a batch
    single = np.array([model.decision_function(frame[i : i + 1])[0] for i in range(5)])
    np.testing.assert_array_equal(single, decision[:5])
    assert pauc_above_tpr(y, proba[:, 1]) > 0.1


def test_rank_blend_of_one_member_keeps_its_ranking():
    frame, y = _rare_data()
    alone = _fast(members=("lightgbm",), blend="rank").fit(frame, y)
    margins = alone._member_margins(alone._prepare(frame, fit=False))["lightgbm"]
    blended = alone.decision_function(frame)
    assert np.all(np.diff(blended[np.argsort(margins, kind="stable")]) >= -1e-12)


def test_rank_map_is_monotone_invertible_and_extends_past_the_reference():
    rng = np.random.default_rng(3)
    scores = np.round(rng.normal(size=5000), 2)  # many ties, like tree outputs
    x, y = _rank_knots(scores)
    assert np.all(np.diff(x) > 0) and np.all(np.diff(y) > 0)
    grid = np.linspace(-8, 8, 2001)
    z = _piecewise(grid, x, y)
    assert np.all(np.diff(z) > 0)  # no ties even far beyond the reference range
    np.testing.assert_allclose(_piecewise(z, y, x), grid, atol=1e-9)
    # the map is the percentile of the reference, on the normal scale
    from scipy.stats import norm

    assert norm.cdf(_piecewise(np.array([0.0]), x, y))[0] == pytest.approx(0.5, abs=0.02)


def test_weighted_rank_knots_are_the_weighted_population_quantiles():
    rng = np.random.default_rng(4)
    scores = rng.normal(size=4000)
    counts = rng.integers(1, 4, size=scores.size)
    x_w, y_w = _rank_knots(scores, counts.astype(float))
    x_r, y_r = _rank_knots(np.repeat(scores, counts))  # integer weights = repeated rows
    grid = np.linspace(-2, 2, 41)
    np.testing.assert_allclose(_piecewise(grid, x_w, y_w), _piecewise(grid, x_r, y_r), atol=0.02)
    # only relative weights matter
    x_s, y_s = _rank_knots(scores, 7.0 * counts)
    np.testing.assert_allclose(x_s, x_w, rtol=1e-12)
    np.testing.assert_allclose(y_s, y_w, rtol=1e-12)


def test_rank_reference_of_a_weighted_fit_is_the_weighted_population():
    from scipy.stats import norm

    frame, y = _rare_data()
    weight = np.where(frame["x0"].to_numpy() > 0, 5.0, 1.0)  # heavy rows score high
    weighted = _fast(members=("lightgbm",), blend="rank").fit(frame, y, sample_weight=weight)
    plain = _fast(members=("lightgbm",), blend="rank").fit(frame, y)
    for model, expected in ((weighted, weight), (plain, np.ones_like(weight))):
        margins = model._member_margins(model._prepare(frame, fit=False))["lightgbm"]
        order = np.argsort(margins)
        cumulative = np.cumsum(expected[order]) / expected.sum()
        # the margin below which a quarter of the (weighted) reference population lies
        quartile = margins[order][np.searchsorted(cumulative, 0.25)]
        percentile = norm.cdf(_piecewise(np.array([quartile]), *model.rank_knots_["lightgbm"]))
        assert percentile[0] == pytest.approx(0.25, abs=0.02)


def test_weights_choose_and_drop_members():
    frame, y = _rare_data()
    model = _fast(weights={"lightgbm": 3, "xgboost": 1, "catboost": 0}).fit(frame, y)
    assert model.members_ == ("lightgbm", "xgboost")
    assert model.weights_ == pytest.approx({"lightgbm": 0.75, "xgboost": 0.25})
    listed = _fast(members=("lightgbm", "xgboost"), weights=[3, 1]).fit(frame, y)
    np.testing.assert_array_equal(listed.predict_proba(frame), model.predict_proba(frame))
    with pytest.raises(ValueError, match="one weight per member"):
        _fast(weights=[1, 2]).fit(frame, y)
    with pytest.raises(ValueError, match="not all 0"):
        _fast(weights=[0, 0, 0]).fit(frame, y)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"members": ("lightgbm", "sklearn")}, "members must be distinct names"),
        ({"blend": "median"}, "blend must be"),
        ({"neg_ratio": 0}, "neg_ratio must be"),
        ({"pos_oversample": 0.5}, "pos_oversample must be"),
        ({"n_bags": 0}, "n_bags must be"),
        ({"device": "tpu"}, "device must be"),
        ({"n_jobs": 0}, "n_jobs must be"),
        ({"lightgbm_params": {"seed": 3}}, "set 'random_state'"),
        ({"xgboost_params": {"nthread": 3}}, "set 'n_jobs'"),
        ({"catboost_params": {"iterations": 5, "n_estimators": 5}}, "boosting rounds twice"),
        ({"lightgbm_params": {"n_estimators": 0}}, "rounds must be an integer"),
        ({"lightgbm_params": {"is_unbalance": True}}, "sets 'is_unbalance', which reweights"),
        ({"catboost_params": {"auto_class_weights": "Balanced"}}, "sets 'auto_class_weights'"),
    ],
)
def test_invalid_parameters_are_reported_in_fit(params, message):
    frame, y = _rare_data(n=300)
    model = _fast(**params)  # __init__ only stores
    with pytest.raises(ValueError, match=message):
        model.fit(frame, y)


def test_binary_only_and_both_classes_required():
    frame, y = _rare_data(n=300)
    with pytest.raises(ValueError, match="Only binary classification"):
        _fast().fit(frame, np.arange(300) % 3)
    with pytest.raises(ValueError, match="one class"):
        _fast().fit(frame, np.zeros(300, dtype=int))


def test_same_seed_same_predictions_other_seed_differs():
    frame, y = _rare_data()
    params = {"n_bags": 2, "neg_ratio": 0.05}
    first = _fast(**params, random_state=7).fit(frame, y).predict_proba(frame)
    second = _fast(**params, random_state=7).fit(frame, y).predict_proba(frame)
    other = _fast(**params, random_state=8).fit(frame, y).predict_proba(frame)
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, other)


def test_thread_count_does_not_change_predictions():
    frame, y = _rare_data(n=800)
    one = _fast(n_jobs=1).fit(frame, y).predict_proba(frame)
    two = _fast(n_jobs=2).fit(frame, y).predict_proba(frame)
    np.testing.assert_array_equal(one, two)


def test_feature_contributions_add_up_to_the_margin():
    frame, y = _rare_data()
    model = _fast(members=("lightgbm",)).fit(frame, y)
    contributions = model.feature_contributions(frame)
    assert contributions.shape == (frame.height, frame.width)
    margin = model._member_margins(model._prepare(frame, fit=False))["lightgbm"]
    bias = margin - contributions.sum(axis=1)
    np.testing.assert_allclose(bias, bias[0], atol=1e-9)  # SHAP: margin = bias + sum
    # x0 drives the label most, so it carries the largest mean |contribution|
    assert np.argmax(np.abs(contributions).mean(axis=0)) == 0


@pytest.mark.parametrize("kind", sorted(MEMBER_KINDS))
def test_device_and_threads_map_to_each_library(kind):
    cpu, _ = MEMBERS[kind].params(None, device="cpu", n_jobs=3)
    gpu, rounds = MEMBERS[kind].params({"n_estimators": 7}, device="cuda", n_jobs=None)
    expected = {
        "lightgbm": ("device_type", "cuda"),
        "xgboost": ("device", "cuda"),
        "catboost": ("task_type", "GPU"),
    }[kind]
    assert gpu[expected[0]] == expected[1] and rounds == 7
    assert cpu.get(expected[0]) != expected[1]
    assert cpu[MEMBERS[kind].thread_keys[0]] == 3
    assert MEMBERS[kind].thread_keys[0] not in gpu  # None: the library's default
    if kind == "catboost":
        assert gpu["allow_writing_files"] is False
        # feature subsampling is CPU-only in CatBoost for this loss: dropped on GPU
        assert cpu["colsample_bylevel"] == 0.3 and "colsample_bylevel" not in gpu
        with pytest.warns(UserWarning, match="colsample_bylevel.*ignored"):
            explicit, _ = MEMBERS[kind].params(
                {"colsample_bylevel": 0.5}, device="cuda", n_jobs=None
            )
        assert "colsample_bylevel" not in explicit


def test_resolve_threads_counts_back_from_the_cores():
    import os

    assert resolve_threads(None) is None
    assert resolve_threads(2) == 2
    assert resolve_threads(-1) == (os.cpu_count() or 1)


def test_import_does_not_load_catboost():
    code = (
        "import sys, lesionboost, lesionboost.ensemble, lesionboost.estimator, "
        "lesionboost.persist; print('catboost' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_catboost_writes_no_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    frame, y = _rare_data(n=500)
    _fast(members=("catboost",)).fit(frame, y)
    assert list(tmp_path.iterdir()) == []


def test_accepts_pandas_numeric_frames_and_lists():
    frame, y = _rare_data(n=600)
    numeric = frame.drop("site")
    model = _fast().fit(numeric.to_pandas(), pd.Series(y))
    assert list(model.feature_names_in_) == numeric.columns
    from_list = _fast().fit(numeric.to_numpy().tolist(), y.tolist())
    assert not hasattr(from_list, "feature_names_in_")
    np.testing.assert_array_equal(
        model.predict_proba(numeric.to_pandas()), from_list.predict_proba(numeric.to_numpy())
    )


def test_lightgbm_without_a_cuda_learner_trains_on_the_cpu_with_a_warning(monkeypatch):
    from lesionboost.ensemble import _members

    frame, y = _rare_data()
    if _members.lightgbm_has_learner("cuda"):  # it would train on the GPU: nothing to check
        pytest.skip("this LightGBM has a CUDA learner")
    monkeypatch.setattr(_members, "_LIGHTGBM_MISSING_LEARNERS", {})  # the first fit learns it
    for _ in range(2):  # the second fit uses what the first learned, and warns again
        with pytest.warns(RuntimeWarning, match="LightGBM cannot train.*'cuda'.*-DUSE_CUDA=1"):
            gpu = _fast(device="cuda", members=("lightgbm",)).fit(frame, y)
    cpu = _fast(device="cpu", members=("lightgbm",)).fit(frame, y)
    np.testing.assert_array_equal(gpu.predict_proba(frame), cpu.predict_proba(frame))


def test_lightgbm_errors_other_than_a_missing_gpu_learner_are_raised(monkeypatch):
    import lightgbm

    from lesionboost.ensemble import _members

    frame, y = _rare_data()

    def out_of_memory(*args, **kwargs):
        raise lightgbm.basic.LightGBMError("[CUDA] out of memory")

    monkeypatch.setattr(_members, "_LIGHTGBM_MISSING_LEARNERS", {})
    monkeypatch.setattr(lightgbm, "train", out_of_memory)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback may be tried
        with pytest.raises(lightgbm.basic.LightGBMError, match="out of memory"):
            _fast(device="cuda", members=("lightgbm",)).fit(frame, y)


def test_predictions_use_the_blend_that_was_fitted():
    # scikit-learn contract: set_params changes nothing until the next fit.
    frame, y = _rare_data()
    for fitted_blend, later in (("mean", "rank"), ("rank", "mean")):
        model = _fast(blend=fitted_blend).fit(frame, y)
        before = model.decision_function(frame)
        model.set_params(blend=later)
        np.testing.assert_array_equal(model.decision_function(frame), before)
        assert model.blend_ == fitted_blend


def test_rank_blend_orders_rows_by_the_weighted_normal_scores():
    frame, y = _rare_data()
    weights = {"lightgbm": 0.6, "xgboost": 0.3, "catboost": 0.1}
    model = _fast(weights=weights).fit(frame, y)
    X = model._prepare(frame, fit=False)
    margins = model._member_margins(X)
    z = sum(w * _piecewise(margins[k], *model.rank_knots_[k]) for k, w in weights.items())
    decision = model.decision_function(frame)
    order = np.argsort(z, kind="stable")
    assert np.all(np.diff(decision[order]) >= -1e-9)  # monotone in the weighted blend
    # and the weights matter: another weighting orders the rows differently
    other = sum(_piecewise(margins[k], *model.rank_knots_[k]) for k in weights)
    assert not np.array_equal(np.argsort(other, kind="stable"), order)


def test_a_view_member_sees_only_its_columns_and_equals_a_fit_on_them():
    frame, y = _rare_data()
    columns = ["x1", "site", "x3"]
    model = _fast(
        members=("lightgbm", "lightgbm:some"), views={"some": columns}, weights=[0, 1]
    ).fit(frame, y)
    assert model.members_ == ("lightgbm:some",)
    assert model.view_columns_ == {"some": [1, 3, 6]}  # sorted positions among X's columns
    alone = _fast(members=("lightgbm",)).fit(frame.select("x1", "x3", "site"), y)
    np.testing.assert_allclose(
        model.decision_function(frame), alone.decision_function(frame.select("x1", "x3", "site"))
    )
    # the view keeps the categorical column native; its contributions land on its columns
    contributions = model.feature_contributions(frame)
    assert contributions.shape == (frame.height, frame.width)
    assert not contributions[:, [0, 2, 4, 5]].any()
    assert np.abs(contributions[:, 6]).sum() > 0


def test_a_view_member_joins_the_blend_as_a_member_of_its_own():
    frame, y = _rare_data()
    both = _fast(members=("lightgbm", "lightgbm:no_x0"), views={"no_x0": ["x1", "x2", "site"]})
    both.fit(frame, y)
    assert set(both.boosters_) == {"lightgbm", "lightgbm:no_x0"}
    assert both.weights_ == pytest.approx({"lightgbm": 0.5, "lightgbm:no_x0": 0.5})
    full = _fast(members=("lightgbm",)).fit(frame, y)
    # x0 drives the label: the member without it ranks worse, the blend differs from either
    blend, alone = both.predict_proba(frame)[:, 1], full.predict_proba(frame)[:, 1]
    assert not np.allclose(blend, alone)
    assert pauc_above_tpr(y, alone) > pauc_above_tpr(
        y, both._member_margins(both._prepare(frame, fit=False))["lightgbm:no_x0"]
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"members": ("lightgbm:raw",)}, "views does not define"),
        ({"members": ("lightgbm:v",), "views": {"v": []}}, r"views\['v'\] must be a non-empty"),
        ({"members": ("lightgbm:v",), "views": {"v": ["nope"]}}, r"views\['v'\] names .*'nope'"),
        ({"members": ("lightgbm:v",), "views": {"v": [0, 99]}}, "index 99, out of range"),
        ({"members": ("sklearn:v",), "views": {"v": ["x0"]}}, "members must be distinct"),
        ({"members": ("lightgbm:v",), "views": ["x0"]}, "views must be a dict"),
    ],
)
def test_views_errors_name_the_member_and_the_fix(params, message):
    frame, y = _rare_data(n=300)
    with pytest.raises(ValueError, match=message):
        _fast(**params).fit(frame, y)


def test_predictions_do_not_depend_on_the_input_layout():
    # a polars frame is read column-major, pandas and numpy row-major; XGBoost margins
    # come from inplace_predict, its contributions from a DMatrix: all must agree
    frame, y = _rare_data()
    model = _fast(
        members=("lightgbm", "xgboost", "catboost", "xgboost:some"), views={"some": [0, 6]}
    )
    model.fit(frame, y)
    from_polars = model.decision_function(frame)
    np.testing.assert_array_equal(from_polars, model.decision_function(frame.to_pandas()))
    matrix = model._prepare(frame, fit=False)
    assert matrix.flags["F_CONTIGUOUS"]
    booster = model.boosters_["xgboost"][0]
    import xgboost as xgb

    dmatrix = xgb.DMatrix(
        np.ascontiguousarray(matrix),
        missing=np.nan,
        feature_types=booster.feature_types,
        enable_categorical=True,
    )
    np.testing.assert_allclose(
        MEMBERS["xgboost"].margin(booster, matrix, 1),
        booster.predict(dmatrix, output_margin=True),
        rtol=1e-6,
    )
