"""The ``linear`` member: penalised logistic regression on quantile-normalised columns, as JSON."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

import lesionboost as lb
from lesionboost.ensemble import GBDTEnsembleClassifier
from lesionboost.ensemble._linear import LinearScorer, _Problem, check_linear_params
from lesionboost.ensemble._members import MEMBERS
from lesionboost.exceptions import ModelFileError
from lesionboost.metrics import pauc_above_tpr


def _additive_data(n=4000, seed=0):
    """Risk that adds up five smooth effects and one categorical: a linear model's world."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6))
    X[:, 5] = rng.integers(0, 4, n)  # a categorical code column
    X[rng.random(n) < 0.05, 1] = np.nan
    logit = -4.0 + 0.9 * X[:, 0] + 0.7 * np.nan_to_num(X[:, 1]) + 0.6 * X[:, 2] + 0.5 * X[:, 3]
    logit += 0.4 * np.exp(X[:, 4]) + 1.5 * (X[:, 5] == 2)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return X.astype(np.float32), y


def test_linear_scorer_learns_signs_and_the_categorical_level():
    X, y = _additive_data()
    scorer = LinearScorer.fit(X, y, cat_idx=[5], params={"C": 1.0})
    # design: 5 quantile-normal numerics, then one indicator per level (0, 1, 2, 3)
    assert scorer.coef.shape == (5 + 4,)
    assert (scorer.coef[:5] > 0).all()
    level_coef = scorer.coef[5:]
    assert np.argmax(level_coef) == 2
    # a monotone transform of a column (exp) does not hurt it: the quantile map undoes it
    assert pauc_above_tpr(y, scorer.margin(X)) > 0.1


def test_linear_contributions_add_up_to_the_margin_and_land_on_their_columns():
    X, y = _additive_data()
    scorer = LinearScorer.fit(X, y, cat_idx=[5])
    parts = scorer.contributions(X[:50])
    assert parts.shape == (50, 6)
    reference = float(scorer.baseline @ scorer.coef + scorer.intercept)
    np.testing.assert_allclose(parts.sum(axis=1) + reference, scorer.margin(X[:50]), atol=1e-9)
    # the level with the largest coefficient raises the score of its rows
    rows = X[:50, 5] == 2
    assert (parts[rows, 5] > parts[~rows, 5].max()).all()


def test_missing_values_and_unseen_levels_score_without_error():
    X, y = _additive_data()
    scorer = LinearScorer.fit(X, y, cat_idx=[5])
    odd = X[:3].copy()
    odd[0, 0] = np.nan  # missing numeric: the median (0 on the normal scale)
    odd[1, 5] = 9.0  # a level training never saw: no indicator fires
    odd[2, 5] = np.nan
    margin = scorer.margin(odd)
    assert np.isfinite(margin).all()
    design = scorer.design(odd)
    assert design[0, 0] == 0.0
    assert design[1, 5:].sum() == 0 and design[2, 5:].sum() == 0


def test_json_round_trip_is_exact_and_malformed_json_is_refused():
    X, y = _additive_data()
    scorer = LinearScorer.fit(X, y, cat_idx=[5], params={"C": 0.3})
    again = LinearScorer.from_json(scorer.to_json())
    np.testing.assert_array_equal(again.margin(X), scorer.margin(X))
    np.testing.assert_array_equal(again.contributions(X[:5]), scorer.contributions(X[:5]))
    state = json.loads(scorer.to_json())
    with pytest.raises(ValueError, match="lesionboost-linear-3"):
        LinearScorer.from_json(json.dumps({**state, "format": "pickle"}))
    with pytest.raises(ValueError, match="coefficients"):
        LinearScorer.from_json(json.dumps({**state, "coef": state["coef"][:-1]}))
    with pytest.raises(ValueError, match="expected 6 columns"):
        scorer.margin(X[:, :4])


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"alpha": 1.0}, "linear_params accepts"),
        ({"C": 0}, "must be a number > 0"),
        ({"C": "big"}, "must be a number > 0"),
        ({"n_quantiles": 3}, "integer >= 10"),
        ({"max_iter": 0.5}, "integer >= 1"),
        ({"tails": [1.0, 1.0]}, "distinct normal-score thresholds"),
        ({"tails": [-0.5]}, "distinct normal-score thresholds"),
        ({"tails": "wide"}, "distinct normal-score thresholds"),
        ({"tails": [True]}, "distinct normal-score thresholds"),
        ({"rules": -1}, "integer >= 0 \\(0: no rules\\)"),
        ({"rules": 2.5}, "integer >= 0"),
        ({"rule_depth": 7}, "integer in \\[1, 6\\]"),
        ({"rule_scale": 0.0}, "'rule_scale'\\] must be a number > 0"),
        ({"rule_columns": []}, "non-empty list of distinct column indices"),
        ({"rule_columns": [1, 1]}, "non-empty list of distinct column indices"),
        ({"rule_columns": [-1]}, "non-empty list of distinct column indices"),
        ({"rule_columns": [True]}, "non-empty list of distinct column indices"),
        ({"rule_columns": ["a"]}, "non-empty list of distinct column indices"),
        ({"rule_view": ""}, "'rule_view'\\] must be the name of a view"),
        ({"rule_scale": []}, "non-empty list of numbers > 0"),
        ({"rule_scale": [0.5, -1.0]}, "non-empty list of numbers > 0"),
        ({"rule_scale": [0.5, "a"]}, "non-empty list of numbers > 0"),
        ({"rule_residual": "yes"}, "'rule_residual'\\] must be True"),
        ({"rule_residual": 1}, "'rule_residual'\\] must be True"),
        ({"rule_view": "raw", "rule_columns": [0]}, "both 'rule_view' and 'rule_columns'"),
        ({"context_scale": 0.0, "own_columns": [0]}, "'context_scale'\\] must be a number > 0"),
        ({"context_scale": 0.5}, "name those with 'own_view'"),
        ({"own_columns": [2, 2]}, "distinct column indices >= 0 \\(the lesion's own columns"),
        ({"own_view": "raw", "own_columns": [0]}, "both 'own_view' and 'own_columns'"),
        ({"l1_ratio": 1.5}, "'l1_ratio'\\] must be a number in \\[0, 1\\] \\(0: L2, 1: L1\\)"),
        ({"l1_ratio": True}, "'l1_ratio'\\] must be a number in \\[0, 1\\]"),
        ({"l1_ratio": "l1"}, "'l1_ratio'\\] must be a number in \\[0, 1\\]"),
    ],
)
def test_linear_params_errors_name_the_setting(params, message):
    with pytest.raises(ValueError, match=message):
        check_linear_params(params)
    X, y = _additive_data(n=500)
    with pytest.raises(ValueError, match=message):
        GBDTEnsembleClassifier(members=("linear",), linear_params=params).fit(X, y)


def test_linear_member_in_the_ensemble_saves_as_json_and_loads_exactly(tmp_path):
    X, y = _additive_data()
    frame = pl.DataFrame({f"x{i}": X[:, i] for i in range(5)}).with_columns(
        pl.Series("site", np.array(["arm", "leg", "torso", "back"])[X[:, 5].astype(int)])
    )
    model = GBDTEnsembleClassifier(
        members=("lightgbm", "linear"),
        lightgbm_params={"n_estimators": 15},
        linear_params={"C": 0.5},
        neg_ratio=0.5,
        n_jobs=1,
    ).fit(frame, y)
    assert len(model.boosters_["linear"]) == 2  # one per bag, like the boosters
    assert model.offsets_["linear"] < 0  # downsampling undone, no class weight to undo
    lb.save_model(model, tmp_path / "m")
    files = sorted(p.name for p in (tmp_path / "m" / "members").iterdir())
    assert files == ["lightgbm-0.txt", "lightgbm-1.txt", "linear-0.json", "linear-1.json"]
    loaded = lb.load_model(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict_proba(frame), model.predict_proba(frame))
    # a member file edited by hand is caught by its hash before it is parsed
    path = tmp_path / "m" / "members" / "linear-0.json"
    path.write_text(path.read_text().replace('"intercept": ', '"intercept": 1'))
    with pytest.raises(ModelFileError, match="linear-0.json"):
        lb.load_model(tmp_path / "m")


def test_linear_member_adapter_has_no_rounds_device_or_threads():
    params, rounds = MEMBERS["linear"].params({"C": 2}, device="cuda", n_jobs=4)
    assert params == {
        "C": 2.0,
        "n_quantiles": 200,
        "max_iter": 1000,
        "tails": (),
        "rules": 0,
        "rule_depth": 3,
        "rule_scale": 0.3,
        "rule_view": None,
        "rule_columns": None,
        "rule_residual": False,
        "context_scale": 1.0,
        "own_view": None,
        "own_columns": None,
        "l1_ratio": 0.0,
    }
    assert rounds == 1


def test_linear_member_lifts_an_ensemble_on_an_additive_risk():
    X, y = _additive_data(n=12000, seed=3)
    test_X, test_y = _additive_data(n=12000, seed=4)
    trees = GBDTEnsembleClassifier(
        members=("lightgbm",), lightgbm_params={"n_estimators": 40}, neg_ratio=0.1, n_jobs=1
    ).fit(X, y)
    both = GBDTEnsembleClassifier(
        members=("lightgbm", "linear"),
        lightgbm_params={"n_estimators": 40},
        neg_ratio=0.1,
        n_jobs=1,
        categorical_features=[5],
    ).fit(X, y)
    assert pauc_above_tpr(test_y, both.decision_function(test_X)) > pauc_above_tpr(
        test_y, trees.decision_function(test_X)
    )


def test_tied_values_map_to_the_middle_of_their_run_and_constants_to_zero():
    rng = np.random.default_rng(0)
    n = 2000
    binary = (rng.random(n) < 0.2).astype(float)  # 80 % zeros
    X = np.column_stack([binary, np.full(n, 3.0), rng.normal(size=n)])
    y = (rng.random(n) < 0.1).astype(int)
    scorer = LinearScorer.fit(X, y, cat_idx=[])
    design = scorer.design(np.array([[0.0, 3.0, 0.0], [1.0, 3.0, 0.0]]))
    from scipy.stats import norm

    # zeros fill the levels 0 .. 0.8 and ones 0.8 .. 1: each maps to the middle of its run
    np.testing.assert_allclose(design[:, 0], norm.ppf([0.4, 0.9]), atol=0.02)
    assert (design[:, 1] == 0).all()  # a constant column carries no information


def _via_design(scorers, X):
    """The mean margin of ``scorers`` computed the long way: design matrix times coefficients."""
    margins = []
    for scorer in scorers:
        margin = scorer.design(X) @ scorer.coef + scorer.intercept
        if scorer.rules is not None:
            margin = margin + scorer.rules.predict(X.astype(np.float32), raw_score=True)
        margins.append(margin)
    return np.mean(margins, axis=0)


@pytest.mark.parametrize(
    "params",
    [{}, {"tails": [0.5, 1.5]}, {"tails": [1.0]}, {"rules": 6, "rule_depth": 2}],
    ids=["scores", "hinges", "a-hinge-beyond-the-binary-column-s-scores", "rules"],
)
def test_mean_margin_of_bags_equals_their_design_matrices_times_coefficients(params):
    from lesionboost.ensemble._linear import mean_margin

    X, y = _additive_data(n=6000)
    first = np.arange(0, 3000)
    X[first[X[first, 5] == 3], 5] = 1.0  # bag 0 never sees level 3, bag 1 does
    X[first, 3] = 0.5  # and column 3 is constant in bag 0: no knots there
    X[:, 4] = X[:, 4] > 0  # a binary column: normal scores of about +-0.67 only
    bags = [
        LinearScorer.fit(X[rows], y[rows], cat_idx=[5], params=params, seed=i)
        for i, rows in enumerate([first, np.arange(3000, 6000)])
    ]
    assert len(bags[0].levels[5]) == 3 and len(bags[1].levels[5]) == 4
    assert len(bags[0].knots[3][0]) == 1 and len(bags[1].knots[3][0]) > 100
    assert np.abs(bags[0].knots[4][1]).max() < 1.0
    probe, _ = _additive_data(n=3000, seed=7)
    probe[:50, 0] = np.nan
    probe[50:100, 2] = np.linspace(-40, 40, 50)  # far beyond both bags' knots
    probe[100, 2], probe[101, 2] = np.inf, -np.inf
    probe[110:120, 5] = 9.0  # a level no bag saw
    probe[120:130, 5] = np.nan
    expected = _via_design(bags, probe)
    np.testing.assert_allclose(mean_margin(bags, probe), expected, rtol=0, atol=1e-12)
    for bag in bags:  # one scorer's margin is its own mean
        np.testing.assert_allclose(bag.margin(probe), _via_design([bag], probe), atol=1e-12)


def test_mean_margin_does_not_depend_on_the_thread_count(monkeypatch):
    import lesionboost.ensemble._linear as linear

    X, y = _additive_data()
    bags = [
        LinearScorer.fit(X[i::2], y[i::2], cat_idx=[5], params={"tails": [1.0]}) for i in (0, 1)
    ]
    monkeypatch.setattr(linear, "_BLOCK_ROWS", 700)  # 4000 rows: five blocks and a short one
    one = linear.mean_margin(bags, X, threads=1)
    np.testing.assert_array_equal(linear.mean_margin(bags, X, threads=3), one)
    np.testing.assert_allclose(one, _via_design(bags, X), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="at least one"):
        linear.mean_margin([], X)
    with pytest.raises(ValueError, match="expected 6 columns"):
        linear.mean_margin(bags, X[:, :5])


def test_column_shares_hold_each_column_s_share_of_the_margin():
    X, y = _additive_data()
    scorer = LinearScorer.fit(X, y, cat_idx=[5], params={"tails": [1.0]})
    numeric, categorical = scorer.column_shares()
    assert [column for column, _, _ in numeric] == [0, 1, 2, 3, 4]
    assert sorted(categorical[5]) == [0.0, 1.0, 2.0, 3.0]
    # the hinge at z = +-1 adds two knots to each column's quantile knots
    column, grid, share = numeric[0]
    assert grid.size == scorer.knots[0][0].size + 2
    # a column's share is its design columns times their coefficients
    probe = X[:200].copy()
    terms = scorer.design(probe) * scorer.coef
    np.testing.assert_allclose(
        np.interp(probe[:, 0], grid, share), terms[:, [0, 5, 10]].sum(axis=1), atol=1e-12
    )


def _two_sided_data(n=6000, seed=1):
    """Risk that rises with |x0| (an outlier either way) and with x1's upper tail only."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    logit = -5.0 + 1.6 * np.abs(X[:, 0]) + 1.5 * np.maximum(X[:, 1] - 1.0, 0.0)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return X.astype(np.float32), y


def test_tails_add_hinges_that_learn_a_two_sided_effect():
    X, y = _two_sided_data()
    plain = LinearScorer.fit(X, y, cat_idx=[], params={"C": 1.0})
    hinged = LinearScorer.fit(X, y, cat_idx=[], params={"C": 1.0, "tails": [1.0, 0.0]})
    assert hinged.tails == (0.0, 1.0)  # sorted
    # layout: 3 scores, then per threshold 3 upper and 3 lower hinges
    assert hinged.width == 3 * (1 + 2 * 2)
    design = hinged.design(np.array([[1.5, -2.0, 0.0]], dtype=np.float32))[0]
    z = design[:3]
    np.testing.assert_allclose(design[3:6], np.maximum(z - 0.0, 0.0))
    np.testing.assert_allclose(design[6:9], np.maximum(-z - 0.0, 0.0))
    np.testing.assert_allclose(design[9:12], np.maximum(z - 1.0, 0.0))
    np.testing.assert_allclose(design[12:15], np.maximum(-z - 1.0, 0.0))
    # |x0|: both one-sided hinges at 0 get positive weight; only the hinges see it
    assert hinged.coef[3] > 0 and hinged.coef[6] > 0
    X_test, y_test = _two_sided_data(seed=2)
    assert (
        pauc_above_tpr(y_test, hinged.margin(X_test))
        > pauc_above_tpr(y_test, plain.margin(X_test)) + 0.02
    )
    # contributions still add up to the margin, one column each
    parts = hinged.contributions(X_test[:40])
    reference = float(hinged.baseline @ hinged.coef + hinged.intercept)
    np.testing.assert_allclose(parts.sum(axis=1) + reference, hinged.margin(X_test[:40]), atol=1e-9)
    again = LinearScorer.from_json(hinged.to_json())
    assert again.tails == hinged.tails
    np.testing.assert_array_equal(again.margin(X_test), hinged.margin(X_test))


def test_files_without_tails_still_load():
    X, y = _additive_data()
    scorer = LinearScorer.fit(X, y, cat_idx=[5])
    state = json.loads(scorer.to_json())
    assert state["format"] == "lesionboost-linear-3" and state["tails"] == []
    del state["tails"], state["rules"]
    older = LinearScorer.from_json(json.dumps({**state, "format": "lesionboost-linear-1"}))
    np.testing.assert_array_equal(older.margin(X), scorer.margin(X))


def _interaction_data(n=20000, seed=0):
    """Risk that is one smooth effect plus a thresholded two-way interaction."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    X[:, 4] = rng.integers(0, 3, n)
    corner = (X[:, 1] > 1.0) & (X[:, 2] > 1.0)
    logit = -4.5 + 0.5 * X[:, 0] + 3.0 * corner
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return X.astype(np.float32), y


def test_rules_learn_a_thresholded_interaction_a_linear_model_cannot():
    X, y = _interaction_data(n=40000)  # about 700 positives
    test_X, test_y = _interaction_data(n=40000, seed=1)
    plain = LinearScorer.fit(X, y, cat_idx=[4])
    ruled = LinearScorer.fit(X, y, cat_idx=[4], params={"rules": 30}, seed=0)
    assert plain.rules is None and ruled.rules is not None
    assert ruled.coef.shape == plain.coef.shape  # the rules live in the trees' leaves
    gain = pauc_above_tpr(test_y, ruled.margin(test_X)) - pauc_above_tpr(
        test_y, plain.margin(test_X)
    )
    assert gain > 0.008  # measured: 0.037 -> 0.051 of the oracle's 0.053
    # the corner scores higher than the rest at the same smooth effect
    probe = np.zeros((2, 5), dtype=np.float32)
    probe[0, 1:3] = 2.0
    assert np.diff(ruled.margin(probe))[0] < -1.0


def _split_columns(scorer, n_columns):
    """How often the rule trees of ``scorer`` split on each column."""
    counts = np.zeros(n_columns, dtype=int)

    def walk(node):
        if "split_feature" in node:
            counts[node["split_feature"]] += 1
            walk(node["left_child"])
            walk(node["right_child"])

    for tree in scorer.rules.dump_model()["tree_info"]:
        walk(tree["tree_structure"])
    return counts


def test_residual_rules_split_on_the_interaction_the_terms_leave():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40000, 5))
    X[:, 4] = rng.integers(0, 3, 40000)
    corner = (X[:, 1] > 1.0) & (X[:, 2] > 1.0)
    logit = -5.5 + 1.5 * X[:, 0] + 2.5 * corner  # a strong smooth effect and a weak corner
    y = (rng.random(40000) < 1 / (1 + np.exp(-logit))).astype(int)
    X = X.astype(np.float32)
    params = {"rules": 10, "rule_depth": 2}
    from_base = LinearScorer.fit(X, y, cat_idx=[4], params=params, seed=0)
    residual = LinearScorer.fit(X, y, cat_idx=[4], params={**params, "rule_residual": True})
    # from the base rate the trees spend most splits re-learning column 0, which the
    # regression's terms hold; from the terms' margin they split on the corner
    base_splits, residual_splits = _split_columns(from_base, 5), _split_columns(residual, 5)
    assert base_splits[0] > base_splits[1] + base_splits[2]  # measured: 21 vs 7
    assert residual_splits[1] + residual_splits[2] > 2 * residual_splits[0]  # 24 vs 5
    # the same model and file format: only the trees' splits differ
    again = LinearScorer.from_json(residual.to_json())
    np.testing.assert_array_equal(again.margin(X[:100]), residual.margin(X[:100]))
    terms = LinearScorer.fit(X, y, cat_idx=[4])
    corner_probe = np.zeros((2, 5), dtype=np.float32)
    corner_probe[0, 1:3] = 2.0
    assert np.diff(residual.margin(corner_probe))[0] < np.diff(terms.margin(corner_probe))[0]


def test_a_list_of_rule_scales_is_chosen_by_inner_cross_validation():
    X, y = _interaction_data(n=20000)
    params = {"rules": 10, "rule_depth": 2}
    # a scale of 0.02 prices every rule out (an L2 penalty 2,500 times a normal score's):
    # on a thresholded interaction the folds prefer the rules at full scale
    chosen = LinearScorer.fit(X, y, cat_idx=[4], params={**params, "rule_scale": [0.02, 1.0]})
    full = LinearScorer.fit(X, y, cat_idx=[4], params={**params, "rule_scale": 1.0})
    priced_out = LinearScorer.fit(X, y, cat_idx=[4], params={**params, "rule_scale": 0.02})
    np.testing.assert_array_equal(chosen.margin(X), full.margin(X))
    assert not np.array_equal(priced_out.margin(X), full.margin(X))
    # the scorer records the scale it was fitted with, in its file too
    assert (chosen.rule_scale, priced_out.rule_scale) == (1.0, 0.02)
    assert LinearScorer.from_json(chosen.to_json()).rule_scale == 1.0
    either_order = LinearScorer.fit(X, y, cat_idx=[4], params={**params, "rule_scale": [1.0, 0.02]})
    np.testing.assert_array_equal(either_order.margin(X), full.margin(X))
    # one candidate, or no rules: that scale without any inner fit
    single = LinearScorer.fit(X, y, cat_idx=[4], params={**params, "rule_scale": [0.02]})
    np.testing.assert_array_equal(single.margin(X), priced_out.margin(X))
    plain = LinearScorer.fit(X, y, cat_idx=[4], params={"rule_scale": [0.02, 1.0]})
    assert plain.rules is None and plain.rule_scale is None
    assert check_linear_params({"rule_scale": [0.5, 1]})["rule_scale"] == (0.5, 1.0)


def test_the_candidates_of_a_choice_share_one_design_and_fit_as_if_alone():
    X, y = _interaction_data(n=6000)
    params = {"rules": 10, "rule_depth": 2, "l1_ratio": 1.0, "rule_scale": [0.3, 1.0]}
    problem = _Problem(
        LinearScorer, X.astype(np.float64), y, [4], check_linear_params(params), None, 0
    )
    solved = {scale: problem.solve(scale, copy_rules=True) for scale in (0.3, 1.0)}
    for scale, shared in solved.items():  # each keeps its own rules after the other's solve
        alone = LinearScorer.fit(X, y, cat_idx=[4], params={**params, "rule_scale": scale})
        np.testing.assert_array_equal(shared.margin(X), alone.margin(X))
        assert shared.rule_scale == scale
    assert not np.array_equal(solved[0.3].margin(X), solved[1.0].margin(X))


def test_an_ensemble_chooses_the_rule_scale_once_for_every_bag(monkeypatch):
    from lesionboost.ensemble import _linear

    X, y = _interaction_data(n=8000)
    calls = []
    choose = _linear._choose_rule_scale

    def counted(*args, **kwargs):
        calls.append(choose(*args, **kwargs))
        return calls[-1]

    monkeypatch.setattr(_linear, "_choose_rule_scale", counted)
    linear = {"rules": 10, "rule_depth": 2}
    fitted = {}
    for scale in ([0.02, 1.0], 1.0):
        clf = GBDTEnsembleClassifier(
            members=("linear",),
            n_bags=3,
            neg_ratio=0.1,
            linear_params={**linear, "rule_scale": scale},
            random_state=0,
        )
        fitted[str(scale)] = clf.fit(X, y, sample_weight=None)
    # the first bag's inner folds choose; the other bags fit that scale directly
    assert calls == [1.0]
    bags = fitted[str([0.02, 1.0])].boosters_["linear"]
    assert [bag.rule_scale for bag in bags] == [1.0, 1.0, 1.0]
    np.testing.assert_array_equal(
        fitted[str([0.02, 1.0])].predict_proba(X[:200]),
        fitted["1.0"].predict_proba(X[:200]),
    )


def test_rule_margin_is_the_joint_fit_and_contributions_still_add_up():
    X, y = _interaction_data(n=6000)
    ruled = LinearScorer.fit(X, y, cat_idx=[4], params={"C": 1.0, "rules": 10, "rule_depth": 2})
    # the rules' share of the log-odds is the trees' raw score, with leaves holding the fit
    linear_part = ruled.design(X) @ ruled.coef + ruled.intercept
    rule_part = ruled.rules.predict(X, raw_score=True)
    np.testing.assert_allclose(ruled.margin(X), linear_part + rule_part)
    assert np.ptp(rule_part) > 0.5
    parts = ruled.contributions(X[:40])
    reference = float(ruled.baseline @ ruled.coef + ruled.intercept) + ruled.rule_baseline()
    np.testing.assert_allclose(parts.sum(axis=1) + reference, ruled.margin(X[:40]), atol=1e-6)
    # the interaction's columns carry the rules' share for the rows in the corner
    corner = (X[:40, 1] > 1.0) & (X[:40, 2] > 1.0)
    if corner.any():
        assert (parts[corner][:, [1, 2]].sum(axis=1) > 0).all()


def test_rule_fit_on_the_sparse_design_is_the_dense_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    from lesionboost.ensemble._linear import _grow_rules, check_linear_params

    X, y = _interaction_data(n=6000)
    params = {"C": 0.5, "rules": 12, "rule_depth": 2}
    ruled = LinearScorer.fit(X, y, cat_idx=[4], params=params, seed=4)
    # the same trees (same seed), every column dense, scikit-learn's solver run to the end
    settings = check_linear_params(params)
    _, leaves, n_leaves = _grow_rules(X.astype(np.float64), y, [4], settings, 4, None)
    indicators = np.zeros((X.shape[0], n_leaves))
    np.put_along_axis(indicators, leaves, 1.0, axis=1)
    assert (indicators.sum(axis=1) == settings["rules"]).all()  # one leaf per tree
    dense = np.hstack([ruled.design(X), settings["rule_scale"] * indicators])
    reference = LogisticRegression(C=0.5, solver="newton-cholesky", tol=1e-10, max_iter=100)
    reference.fit(dense, y)
    np.testing.assert_allclose(
        ruled.margin(X), reference.decision_function(dense), rtol=0, atol=1e-3
    )


def test_stacked_design_is_scipys_hstack_entry_for_entry():
    from scipy import sparse

    from lesionboost.ensemble._linear import _stacked_design

    rng = np.random.default_rng(5)
    design = rng.normal(size=(300, 7))
    design[rng.random(design.shape) < 0.4] = 0.0  # exact zeros are left out, as by scipy
    design[17] = 0.0  # a row without design nonzeros
    leaves = np.column_stack([rng.integers(0, 4, 300), 4 + rng.integers(0, 3, 300)])
    ours = _stacked_design(design, leaves, 7, 0.3)
    rows = np.repeat(np.arange(300), 2)
    indicators = sparse.csr_matrix((np.ones(600), (rows, leaves.ravel())), shape=(300, 7))
    theirs = sparse.hstack([sparse.csr_matrix(design), 0.3 * indicators], format="csr")
    assert ours.shape == theirs.shape == (300, 14)
    np.testing.assert_array_equal(ours.indptr, theirs.indptr)
    np.testing.assert_array_equal(ours.indices, theirs.indices)
    np.testing.assert_array_equal(ours.data, theirs.data)  # the same bits: the same solver path


def test_rules_round_trip_through_json_and_a_damaged_model_is_refused():
    X, y = _interaction_data(n=6000)
    ruled = LinearScorer.fit(X, y, cat_idx=[4], params={"rules": 8}, seed=3)
    text = ruled.to_json()
    again = LinearScorer.from_json(text)
    np.testing.assert_array_equal(again.margin(X), ruled.margin(X))
    np.testing.assert_allclose(again.contributions(X[:5]), ruled.contributions(X[:5]))
    state = json.loads(text)
    assert state["format"] == "lesionboost-linear-3" and state["rules"].startswith("tree")
    with pytest.raises(ValueError, match="LightGBM model in text format"):
        LinearScorer.from_json(json.dumps({**state, "rules": "import os"}))
    # a file written without rules (the previous format) still loads
    plain = json.loads(LinearScorer.fit(X, y, cat_idx=[4]).to_json())
    del plain["rules"]
    older = LinearScorer.from_json(json.dumps({**plain, "format": "lesionboost-linear-2"}))
    assert older.rules is None


def test_rule_trees_follow_the_seed():
    X, y = _interaction_data(n=6000)
    params = {"rules": 8}
    one = LinearScorer.fit(X, y, cat_idx=[4], params=params, seed=1).margin(X)
    same = LinearScorer.fit(X, y, cat_idx=[4], params=params, seed=1).margin(X)
    other = LinearScorer.fit(X, y, cat_idx=[4], params=params, seed=2).margin(X)
    np.testing.assert_array_equal(one, same)
    assert not np.array_equal(one, other)


def test_linear_member_with_rules_saves_and_loads_in_the_ensemble(tmp_path):
    X, y = _interaction_data(n=8000)
    model = GBDTEnsembleClassifier(
        members=("linear",), linear_params={"rules": 10}, neg_ratio=0.2, n_jobs=1, random_state=0
    ).fit(X, y)
    lb.save_model(model, tmp_path / "m")
    loaded = lb.load_model(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    stored = json.loads((tmp_path / "m" / "members" / "linear-0.json").read_text())
    assert stored["rules"].startswith("tree")  # LightGBM text, no pickle
    # per-feature shares cover the rules: the interaction's columns explain the corner
    shares = loaded.feature_contributions(X[:200])
    corner = (X[:200, 1] > 1.0) & (X[:200, 2] > 1.0)
    assert shares.shape == (200, 5) and corner.any()
    assert (
        shares[corner][:, [1, 2]].sum(axis=1).mean() > shares[~corner][:, [1, 2]].sum(axis=1).mean()
    )


def _rule_split_columns(scorer):
    """The columns the rule trees of ``scorer`` split on."""
    return {int(c) for c in np.flatnonzero(_split_columns(scorer, scorer.n_features))}


def test_rule_columns_limit_what_the_rules_can_learn():
    X, y = _interaction_data(n=20000)
    probe = np.zeros((2, 5), dtype=np.float32)
    probe[0, 1:3] = 2.0  # in the corner, the same smooth effect
    on_pair = LinearScorer.fit(X, y, cat_idx=[4], params={"rules": 20, "rule_columns": [1, 2]})
    assert _rule_split_columns(on_pair) == {1, 2}
    # the rules' share: the corner is learnt from its columns ...
    assert np.diff(on_pair.rules.predict(probe, raw_score=True))[0] < -1.0
    elsewhere = LinearScorer.fit(X, y, cat_idx=[4], params={"rules": 20, "rule_columns": [0, 3, 4]})
    assert _rule_split_columns(elsewhere) <= {0, 3, 4}
    # ... and not without them: rows that differ in columns 1 and 2 share every leaf
    assert np.diff(elsewhere.rules.predict(probe, raw_score=True))[0] == 0.0
    # the trees keep X's column positions: every column still scores and explains
    parts = elsewhere.contributions(X[:50])
    reference = float(elsewhere.baseline @ elsewhere.coef + elsewhere.intercept)
    np.testing.assert_allclose(
        parts.sum(axis=1) + reference + elsewhere.rule_baseline(),
        elsewhere.margin(X[:50]),
        atol=1e-6,
    )
    with pytest.raises(ValueError, match="index 5, out of range for X with 5 columns"):
        LinearScorer.fit(X, y, cat_idx=[4], params={"rules": 5, "rule_columns": [0, 5]})
    with pytest.raises(ValueError, match="names a view of an ensemble"):
        LinearScorer.fit(X, y, cat_idx=[4], params={"rules": 5, "rule_view": "raw"})


def test_the_ensemble_turns_a_rule_view_into_the_member_s_rule_columns():
    X, y = _interaction_data(n=8000)
    views = {"pair": [1, 2], "wide": [1, 2, 3], "other": [0]}
    common = {"neg_ratio": 0.2, "n_jobs": 1, "random_state": 0, "views": views}
    model = GBDTEnsembleClassifier(
        members=("linear", "linear:wide"), linear_params={"rules": 8, "rule_view": "pair"}, **common
    ).fit(X, y)
    # all columns: X's positions 1 and 2; the view (1, 2, 3): its positions 0 and 1
    assert {c for b in model.boosters_["linear"] for c in _rule_split_columns(b)} == {1, 2}
    assert {c for b in model.boosters_["linear:wide"] for c in _rule_split_columns(b)} == {0, 1}
    assert set(model.view_columns_) == {"wide"}  # what the model file lists: members' views
    with pytest.raises(ValueError, match="'nope' is not a view of the ensemble.*'other', 'pair'"):
        GBDTEnsembleClassifier(
            members=("linear",), linear_params={"rules": 4, "rule_view": "nope"}, **common
        ).fit(X, y)
    with pytest.raises(ValueError, match="shares no column with the member 'linear:wide'"):
        GBDTEnsembleClassifier(
            members=("linear:wide",), linear_params={"rules": 4, "rule_view": "other"}, **common
        ).fit(X, y)


def _own_and_context_data(n=6000, seed=0):
    """Column 0 carries the risk; column 1 is a noisy copy of it (a "context" feature)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    X[:, 1] = X[:, 0] + 0.5 * rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(-3.0 + 1.2 * X[:, 0])))).astype(int)
    return X, y


def test_context_scale_moves_weight_to_the_own_columns_and_folds_into_the_coefficients():
    X, y = _own_and_context_data()
    plain = LinearScorer.fit(X, y, cat_idx=[], params={"C": 0.05})
    scaled = LinearScorer.fit(
        X, y, cat_idx=[], params={"C": 0.05, "context_scale": 0.3, "own_columns": [0]}
    )
    # the L2 penalty on the copy is 1/0.3**2 times the own column's: its share shrinks
    assert scaled.coef[1] < 0.5 * plain.coef[1]
    assert scaled.coef[0] > plain.coef[0]
    # the same fit as an ordinary one on the scaled design, its scale folded back
    from sklearn.linear_model import LogisticRegression

    design = plain.design(X)
    design[:, 1:] *= 0.3
    reference = LogisticRegression(C=0.05, solver="newton-cholesky", max_iter=1000).fit(design, y)
    np.testing.assert_allclose(scaled.coef, reference.coef_.ravel() * [1.0, 0.3, 0.3], rtol=1e-6)
    # scoring, contributions and the JSON file are those of an ordinary fit
    np.testing.assert_allclose(scaled.margin(X), scaled.design(X) @ scaled.coef + scaled.intercept)
    np.testing.assert_allclose(scaled.baseline, plain.baseline)
    again = LinearScorer.from_json(scaled.to_json())
    np.testing.assert_array_equal(again.margin(X), scaled.margin(X))
    # hinges of a context column are scaled with its score
    hinged = LinearScorer.fit(
        X, y, cat_idx=[], params={"tails": [1.0], "context_scale": 0.5, "own_columns": [0]}
    )
    assert hinged._context_mask([0]).tolist() == [False, True, True] * 3
    with pytest.raises(ValueError, match="index 3, out of range for X with 3 columns"):
        LinearScorer.fit(X, y, cat_idx=[], params={"context_scale": 0.5, "own_columns": [3]})
    with pytest.raises(ValueError, match=r"'own_view'\] = 'raw' names a view of an ensemble"):
        LinearScorer.fit(X, y, cat_idx=[], params={"context_scale": 0.5, "own_view": "raw"})


def test_the_ensemble_turns_an_own_view_into_the_member_s_own_columns():
    X, y = _own_and_context_data(n=8000)
    views = {"own": [0], "other": [2]}
    common = {"neg_ratio": 0.2, "n_jobs": 1, "random_state": 0, "views": views}
    model = GBDTEnsembleClassifier(
        members=("linear",), linear_params={"context_scale": 0.3, "own_view": "own"}, **common
    ).fit(X, y)
    direct = GBDTEnsembleClassifier(
        members=("linear",), linear_params={"context_scale": 0.3, "own_columns": [0]}, **common
    ).fit(X, y)
    for a, b in zip(model.boosters_["linear"], direct.boosters_["linear"], strict=True):
        np.testing.assert_array_equal(a.coef, b.coef)
    with pytest.raises(ValueError, match="'own_view'\\] = 'nope' is not a view of the ensemble"):
        GBDTEnsembleClassifier(
            members=("linear",), linear_params={"context_scale": 0.5, "own_view": "nope"}, **common
        ).fit(X, y)
    with pytest.raises(ValueError, match="shares no column with the member 'linear:other'"):
        GBDTEnsembleClassifier(
            members=("linear:other",),
            linear_params={"context_scale": 0.5, "own_view": "own"},
            **common,
        ).fit(X, y)


def _sparse_data(n=6000, seed=0):
    """Two columns carry the risk, eighteen are noise."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 20))
    y = (rng.random(n) < 1 / (1 + np.exp(-(-3.5 + 1.0 * X[:, 0] - 0.8 * X[:, 1])))).astype(int)
    return X, y


def test_l1_penalty_keeps_the_columns_that_carry_the_risk():
    from sklearn.linear_model import LogisticRegression

    X, y = _sparse_data()
    l2 = LinearScorer.fit(X, y, cat_idx=[], params={"C": 0.02})
    l1 = LinearScorer.fit(X, y, cat_idx=[], params={"C": 0.02, "l1_ratio": 1.0})
    assert np.count_nonzero(l2.coef) == 20
    assert np.flatnonzero(l1.coef)[:2].tolist() == [0, 1]  # the two risk columns stay
    assert np.count_nonzero(l1.coef[2:]) <= 4  # most noise columns are exactly 0
    assert l1.coef[0] > 0 > l1.coef[1]
    # the fit is liblinear's L1 logistic regression on the design, intercept barely penalised
    reference = LogisticRegression(
        C=0.02, l1_ratio=1.0, solver="liblinear", intercept_scaling=100.0, tol=1e-5, random_state=0
    ).fit(l1.design(X), y)
    np.testing.assert_allclose(l1.coef, reference.coef_.ravel(), atol=1e-8)
    # the elastic net lies in between: it keeps more than the lasso, less than L2
    net = LinearScorer.fit(X, y, cat_idx=[], params={"C": 0.02, "l1_ratio": 0.5})
    assert np.count_nonzero(l1.coef) <= np.count_nonzero(net.coef) < 20
    assert net.coef[0] > 0 > net.coef[1]
    # the penalty is a setting of the model, not of its file: it loads and scores the same
    again = LinearScorer.from_json(l1.to_json())
    np.testing.assert_array_equal(again.margin(X), l1.margin(X))


def test_l1_penalty_drops_most_rules_and_follows_the_seed():
    X, y = _interaction_data(n=20000)
    params = {"C": 0.1, "rules": 20, "rule_depth": 2}
    l2 = LinearScorer.fit(X, y, cat_idx=[4], params=params, seed=0)
    l1 = LinearScorer.fit(X, y, cat_idx=[4], params={**params, "l1_ratio": 1.0}, seed=0)

    def leaf_values(scorer):
        trees = scorer.rules.dump_model()["tree_info"]
        out = []

        def walk(node):
            if "leaf_value" in node:
                out.append(node["leaf_value"])
            else:
                walk(node["left_child"])
                walk(node["right_child"])

        for tree in trees:
            walk(tree["tree_structure"])
        return np.array(out)

    assert np.count_nonzero(leaf_values(l2)) == leaf_values(l2).size
    kept = np.count_nonzero(leaf_values(l1))
    assert 0 < kept < 0.5 * leaf_values(l1).size
    test_X, test_y = _interaction_data(n=20000, seed=1)
    no_rules = LinearScorer.fit(X, y, cat_idx=[4], params={"C": 0.1, "l1_ratio": 1.0})
    assert pauc_above_tpr(test_y, l1.margin(test_X)) > pauc_above_tpr(
        test_y, no_rules.margin(test_X)
    )
    again = LinearScorer.fit(X, y, cat_idx=[4], params={**params, "l1_ratio": 1.0}, seed=0)
    np.testing.assert_array_equal(again.margin(test_X), l1.margin(test_X))
