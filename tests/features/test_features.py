"""LesionFeaturizer: hand-computed values, patient isolation, contracts, persistence."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sklearn.base import clone
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline

import lesionboost.features as features_module
from conftest import make_tiny_metadata
from lesionboost import DataWarning, LesionFeaturizer, ModelFileError, SchemaError
from lesionboost.features._derived import DERIVED_FEATURES, OUTLIER_COLUMNS
from lesionboost.schema import CATEGORICAL_COLUMNS, LEAK_COLUMNS, NUMERIC_COLUMNS, split_xy

EPS = 1e-5


def _features(**kwargs) -> LesionFeaturizer:
    return LesionFeaturizer(**kwargs)


@pytest.fixture
def hand_frame() -> pl.DataFrame:
    """Patient A: 3 lesions (2 on the back, 1 on the front); patient B: 1 lesion."""
    frame, _ = split_xy(make_tiny_metadata(n_patients=1, lesions=4, seed=3))
    return frame.with_columns(
        patient_id=pl.Series(["A", "A", "A", "B"]),
        clin_size_long_diam_mm=pl.Series([2.0, 4.0, 6.0, 5.0]),
        tbp_lv_minorAxisMM=pl.Series([1.0, 3.0, 3.0, 2.5]),
        tbp_lv_areaMM2=pl.Series([1.5, 9.0, 14.0, 10.0]),
        tbp_lv_H=pl.Series([50.0, 40.0, 60.0, 55.0]),
        tbp_lv_Hext=pl.Series([55.0, 45.0, 58.0, 60.0]),
        tbp_lv_radial_color_std_max=pl.Series([0.0, 1.0, 2.0, 0.5]),
        tbp_lv_color_std_mean=pl.Series([0.0, 0.5, 3.0, 0.25]),
        tbp_lv_location=pl.Series(
            [
                "Torso Back Top Third",
                "Torso Back Middle Third",
                "Torso Front Top Half",
                "Head & Neck",
            ]
        ),
        tbp_lv_location_simple=pl.Series(
            ["Torso Back", "Torso Back", "Torso Front", "Head & Neck"]
        ),
        anatom_site_general=pl.Series(
            ["posterior torso", "posterior torso", "anterior torso", "head/neck"]
        ),
        age_approx=pl.Series([60.0, 60.0, None, 45.0]),
    )


def _col(frame: pl.DataFrame, name: str) -> np.ndarray:
    return frame.get_column(name).cast(pl.Float64).to_numpy()


# -- hand-computed values ----------------------------------------------------------------


def test_hand_computed_derived_z_rank_region_and_counts(hand_frame) -> None:
    out = _features(rank_columns="all").fit_transform(hand_frame)
    # derived
    np.testing.assert_allclose(_col(out, "lesion_size_ratio"), [0.5, 0.75, 0.5, 0.5], rtol=1e-6)
    np.testing.assert_allclose(_col(out, "hue_contrast"), [5.0, 5.0, 2.0, 5.0], rtol=1e-6)
    # color_std_mean / radial with a zero denominator is guarded: 0 / 1e-5 = 0
    np.testing.assert_allclose(_col(out, "color_uniformity"), [0.0, 0.5, 1.5, 0.5], rtol=1e-5)
    # patient z: sizes 2, 4, 6 -> mean 4, sample sd 2; B is alone -> 0
    expected_z = [-2 / (2 + EPS), 0.0, 2 / (2 + EPS), 0.0]
    np.testing.assert_allclose(
        _col(out, "clin_size_long_diam_mm__z_patient"), expected_z, rtol=1e-6
    )
    np.testing.assert_allclose(
        _col(out, "clin_size_long_diam_mm__rank_patient"), [0.0, 0.5, 1.0, 0.5]
    )
    # ties (minor axis 3, 3) share their average rank
    np.testing.assert_allclose(
        _col(out, "tbp_lv_minorAxisMM__rank_patient"), [0.0, 0.75, 0.75, 0.5]
    )
    # region: A's back lesions (2, 4) -> mean 3, sd sqrt(2); A's front lesion is alone
    r2 = math.sqrt(2.0)
    expected_region = [-1 / (r2 + EPS), 1 / (r2 + EPS), 0.0, 0.0]
    for grouping in ("patient_location", "patient_site"):
        np.testing.assert_allclose(
            _col(out, f"clin_size_long_diam_mm__z_{grouping}"), expected_region, rtol=1e-6
        )
        np.testing.assert_allclose(
            _col(out, f"clin_size_long_diam_mm__rank_{grouping}"), [0.0, 1.0, 0.5, 0.5]
        )
    # counts
    np.testing.assert_allclose(_col(out, "n_lesions_patient"), [3, 3, 3, 1])
    np.testing.assert_allclose(_col(out, "n_lesions_patient_site"), [2, 2, 1, 1])
    np.testing.assert_allclose(_col(out, "n_lesions_patient_location"), [2, 2, 1, 1])
    np.testing.assert_allclose(_col(out, "area_sum_patient"), [24.5, 24.5, 24.5, 10.0])
    np.testing.assert_allclose(_col(out, "area_sum_patient_site"), [10.5, 10.5, 14.0, 10.0])


def test_missing_values_stay_missing_and_do_not_spread(hand_frame) -> None:
    out = _features(rank_columns="all").fit_transform(hand_frame)
    # age is missing on row 2 only: its own z/rank and age-based ratios are null there...
    assert out.get_column("age_approx__z_patient").to_list()[2] is None
    assert out.get_column("normalized_lesion_size").to_list()[2] is None
    # ...A's other two ages (60, 60) have zero variance: z = 0 and rank 0.5
    assert _col(out, "age_approx__z_patient")[:2].tolist() == [0.0, 0.0]
    assert _col(out, "age_approx__rank_patient")[:2].tolist() == [0.5, 0.5]
    # every column that does not read age is complete
    age_free = [
        c
        for c in out.columns
        if "age" not in c
        and not c.startswith(tuple(d.name for d in DERIVED_FEATURES if "age_approx" in d.inputs()))
    ]
    assert out.select(age_free).null_count().sum_horizontal().item() == 0


def test_outlier_summaries_match_their_definition(hand_frame) -> None:
    featurizer = _features(z_threshold=0.9)
    out = featurizer.fit_transform(hand_frame)
    z_cols = [c for c in out.columns if c.endswith("__z_patient")]
    absz = np.abs(out.select(z_cols).to_numpy().astype(np.float64))
    np.testing.assert_allclose(_col(out, "ud_max_abs_z"), np.nanmax(absz, axis=1), rtol=1e-6)
    np.testing.assert_allclose(
        _col(out, "ud_count_abs_z_gt"), np.sum(np.nan_to_num(absz) > 0.9, axis=1)
    )
    np.testing.assert_allclose(
        _col(out, "ud_std_abs_z"), np.nanstd(absz, axis=1), rtol=1e-4, atol=1e-6
    )
    key = out.select([f"{c}__z_patient" for c in OUTLIER_COLUMNS]).to_numpy().astype(np.float64)
    np.testing.assert_allclose(
        _col(out, "outlier_score"), np.sqrt((key**2).mean(axis=1)), rtol=1e-5
    )
    assert out.get_column("outlier_score")[3] == 0.0  # a lone lesion is nobody's outlier


def test_categorical_codes_missing_unknown_and_sorted_levels(hand_frame) -> None:
    frame = hand_frame.with_columns(sex=pl.Series(["male", "female", None, "male"]))
    featurizer = _features(groups=()).fit(frame)
    assert featurizer.category_maps_["sex"] == ["female", "male"]
    assert featurizer.categorical_features_ == list(CATEGORICAL_COLUMNS)
    out = featurizer.transform(frame)
    assert out.schema["sex"] == pl.Int32
    assert out.get_column("sex").to_list() == [3, 2, 0, 3]
    new = frame.with_columns(attribution=pl.lit("FNQH Cairns"))
    with pytest.warns(DataWarning, match=r"'attribution'.*FNQH Cairns.*\(4 row"):
        codes = featurizer.transform(new).get_column("attribution").to_list()
    assert codes == [1, 1, 1, 1]


def test_zero_denominators_and_extreme_positions_stay_finite(hand_frame) -> None:
    frame = hand_frame.with_columns(
        tbp_lv_z=pl.lit(0.0),
        tbp_lv_perimeterMM=pl.lit(0.0),
        tbp_lv_L=pl.lit(0.0),
        tbp_lv_A=pl.lit(-3.0),
        tbp_lv_radial_color_std_max=pl.lit(0.0),
        tbp_lv_norm_border=pl.lit(0.0),
        tbp_lv_norm_color=pl.lit(0.0),
    )
    out = _features().fit_transform(frame)
    values = out.select(pl.selectors.float()).to_numpy()
    assert not np.isinf(values).any()
    assert not np.isnan(values[1]).any()  # row 1 has no missing input
    assert np.isfinite(_col(out, "color_geometric_mean")).all()  # cube root of a negative


# -- patient context ---------------------------------------------------------------------


@pytest.mark.parametrize("rank_columns", ["none", "all"])  # ranks sort within groups
def test_patient_features_depend_only_on_that_patients_lesions(rank_columns) -> None:
    frame = make_tiny_metadata(n_patients=3, lesions=6, seed=1)
    X, _ = split_xy(frame)
    featurizer = _features(rank_columns=rank_columns).fit(X)
    alone = featurizer.transform(X)
    other = make_tiny_metadata(n_patients=2, lesions=9, seed=7).with_columns(
        patient_id=pl.concat_str(pl.lit("NEW_"), pl.col("patient_id")),
        isic_id=pl.concat_str(pl.lit("X"), pl.col("isic_id")),
    )
    Xo, _ = split_xy(other)
    with warnings.catch_warnings():  # the new patients bring body locations unseen at fit
        warnings.simplefilter("ignore", DataWarning)
        together = featurizer.transform(pl.concat([Xo.head(9), X, Xo.tail(9)]))
    assert together.slice(9, X.height).equals(alone)


@pytest.mark.parametrize("rank_columns", ["none", "all"])
def test_row_order_does_not_matter(rank_columns) -> None:
    X, _ = split_xy(make_tiny_metadata(n_patients=4, lesions=8, seed=2))
    featurizer = _features(rank_columns=rank_columns).fit(X)
    base = featurizer.transform(X)
    order = np.random.default_rng(0).permutation(X.height)
    shuffled = featurizer.transform(X[order])
    back = shuffled[np.argsort(order)]
    for name in base.columns:
        np.testing.assert_allclose(
            _col(back, name), _col(base, name), rtol=1e-5, atol=1e-6, err_msg=name
        )


def test_simulated_cohort_has_no_nan_or_inf_and_nulls_only_from_missing_inputs() -> None:
    from lesionboost import simulate_slice3d

    X, _ = split_xy(simulate_slice3d(12, seed=4).train)
    out = _features().fit_transform(X)
    assert out.height == X.height
    values = out.select(pl.selectors.float()).to_numpy()
    assert np.isfinite(values[~np.isnan(values)]).all()
    assert not np.isnan(out.select(pl.selectors.float()).fill_null(0.0).to_numpy()).any()
    complete = X.select(pl.all_horizontal(pl.col(NUMERIC_COLUMNS).is_not_null())).to_series()
    assert out.filter(complete).null_count().sum_horizontal().item() == 0
    assert {out.schema[c] for c in out.columns if c not in CATEGORICAL_COLUMNS} == {pl.Float32}
    assert {out.schema[c] for c in CATEGORICAL_COLUMNS} == {pl.Int32}


# -- contract ------------------------------------------------------------------------------


def test_leak_columns_are_dropped_with_a_warning_naming_them(tiny_metadata) -> None:
    with pytest.warns(DataWarning, match=r"'target'.*'lesion_id'.*'iddx_full'") as fit_warnings:
        featurizer = _features().fit(tiny_metadata)
    with pytest.warns(DataWarning, match="leak") as transform_warnings:
        out = featurizer.transform(tiny_metadata)
    # the warnings point at the caller's line, not at scikit-learn's set_output wrapper
    assert {w.filename for w in [*fit_warnings, *transform_warnings]} == {__file__}
    assert not set(LEAK_COLUMNS) & set(out.columns)
    assert not any(
        c.startswith(("isic_id", "patient_id", "image_type", "copyright")) for c in out.columns
    )
    X, _ = split_xy(tiny_metadata)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        assert _features().fit(X).transform(X).equals(out)


def test_feature_names_are_identical_between_fit_and_transform(tiny_metadata) -> None:
    X, _ = split_xy(tiny_metadata)
    featurizer = _features().fit(X)
    other, _ = split_xy(make_tiny_metadata(n_patients=2, lesions=3, seed=9))
    for frame in (X, other, other.head(1)):
        with warnings.catch_warnings():  # unseen body locations are expected here
            warnings.simplefilter("ignore", DataWarning)
            assert featurizer.transform(frame).columns == featurizer.feature_names_out_
    assert list(featurizer.get_feature_names_out()) == featurizer.feature_names_out_
    assert len(set(featurizer.feature_names_out_)) == len(featurizer.feature_names_out_)
    assert featurizer.n_features_in_ == X.width
    assert list(featurizer.feature_names_in_) == X.columns


def test_groups_switch_their_columns_on_and_off(tiny_metadata) -> None:
    X, _ = split_xy(tiny_metadata)
    base = _features(groups=()).fit(X).feature_names_out_
    assert base == [*NUMERIC_COLUMNS, *CATEGORICAL_COLUMNS]
    sizes = {}
    for group in features_module.GROUPS:
        names = _features(groups=(group,), rank_columns="all").fit(X).feature_names_out_
        sizes[group] = len(names) - len(base)
        assert names[: len(base)] == base
    n_raw, n_all = len(NUMERIC_COLUMNS), len(NUMERIC_COLUMNS) + len(DERIVED_FEATURES)
    assert sizes == {
        "derived": len(DERIVED_FEATURES),
        "patient": 2 * n_raw,
        "region": 4 * n_raw,
        "outlier": 4,
        "counts": 5,
    }
    full = _features(rank_columns="all").fit(X).feature_names_out_
    assert len(full) == len(base) + len(DERIVED_FEATURES) + 6 * n_all + 4 + 5
    default = _features().fit(X).feature_names_out_  # z-scores only, no ranks
    assert len(default) == len(base) + len(DERIVED_FEATURES) + 3 * n_all + 4 + 5
    assert not any("__rank_" in c for c in default)
    key = _features(groups=("patient",), rank_columns="key").fit(X).feature_names_out_
    ranked = [c for c in NUMERIC_COLUMNS if c in OUTLIER_COLUMNS]
    assert [c for c in key if "__rank_" in c] == [f"{c}__rank_patient" for c in ranked]
    with pytest.raises(ValueError, match="unknown group.*'images'"):
        _features(groups=("derived", "images")).fit(X)
    with pytest.raises(ValueError, match="rank_columns"):
        _features(rank_columns="some").fit(X)


def test_clear_errors_for_bad_input(tiny_metadata) -> None:
    X, _ = split_xy(tiny_metadata)
    with pytest.raises(SchemaError, match="'patient_id'"):
        _features().fit(X.drop("patient_id"))
    with pytest.raises(SchemaError, match="'tbp_lv_H'"):
        _features().fit(X.drop("tbp_lv_H"))
    with pytest.raises(SchemaError, match="'tbp_lv_x'.*numeric"):
        _features().fit(X.with_columns(pl.col("tbp_lv_x").cast(pl.String)))
    with pytest.raises(SchemaError, match="patient_id.*empty"):
        _features().fit(X.with_columns(patient_id=pl.lit(None, dtype=pl.String)))
    with pytest.raises(NotFittedError):
        _features().transform(X)
    with pytest.raises(TypeError, match="polars or pandas DataFrame"):
        _features().fit(X.to_numpy())


def test_extra_numeric_columns_get_patient_features(hand_frame) -> None:
    frame = hand_frame.with_columns(image_score=pl.Series([0.1, 0.2, 0.9, 0.4]))
    out = _features(
        groups=("patient",), extra_numeric=("image_score",), rank_columns="key"
    ).fit_transform(frame)
    np.testing.assert_allclose(_col(out, "image_score__rank_patient"), [0.0, 0.5, 1.0, 0.5])
    assert "image_score__z_patient" in out.columns
    with pytest.raises(SchemaError, match="image_score"):
        _features(extra_numeric=("image_score",)).fit(hand_frame)
    with pytest.raises(ValueError, match="extra_numeric"):
        _features(extra_numeric=("tbp_lv_H",)).fit(frame)


def test_every_derived_feature_is_documented_in_the_features_guide() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "features.md").read_text()
    missing = [d.name for d in DERIVED_FEATURES if f"- `{d.name}` =" not in doc]
    assert not missing
    assert len({d.name for d in DERIVED_FEATURES}) == len(DERIVED_FEATURES) == 65


# -- interoperability ----------------------------------------------------------------------


def test_pandas_and_polars_inputs_give_identical_results(tiny_metadata) -> None:
    pytest.importorskip("pandas")
    X, _ = split_xy(tiny_metadata)
    from_polars = _features().fit_transform(X)
    from_pandas = _features().fit_transform(X.to_pandas())
    assert from_pandas.equals(from_polars)


def test_round_trip_through_json(tiny_metadata) -> None:
    X, _ = split_xy(tiny_metadata)
    featurizer = _features(groups=("derived", "patient", "outlier"), z_threshold=1.5).fit(X)
    state = json.loads(json.dumps(featurizer.to_dict()))
    restored = LesionFeaturizer.from_dict(state)
    assert restored.get_params() == {
        **featurizer.get_params(),
        "groups": ("derived", "patient", "outlier"),
    }
    assert restored.category_maps_ == featurizer.category_maps_
    assert restored.transform(X).equals(featurizer.transform(X))
    with pytest.raises(ModelFileError, match="format_version"):
        LesionFeaturizer.from_dict({**state, "format_version": 99})
    with pytest.raises(ModelFileError, match="Not a LesionFeaturizer"):
        LesionFeaturizer.from_dict({"params": {}})
    tampered = {**state, "feature_names_out_": state["feature_names_out_"][:-1]}
    with pytest.raises(ModelFileError, match="Refit"):
        LesionFeaturizer.from_dict(tampered)


def test_pipeline_and_pandas_output(tiny_metadata) -> None:
    pd = pytest.importorskip("pandas")
    X, y = split_xy(make_tiny_metadata(n_patients=6, lesions=10, seed=5))
    X_pd = X.to_pandas()
    X_pd.index = pd.RangeIndex(100, 100 + len(X_pd))
    pipe = Pipeline(
        [("features", LesionFeaturizer()), ("model", HistGradientBoostingClassifier(max_iter=5))]
    ).set_output(transform="pandas")
    pipe.fit(X_pd, y.to_numpy())
    assert pipe.predict_proba(X_pd).shape == (X.height, 2)
    features = pipe.named_steps["features"].transform(X_pd)
    assert isinstance(features, pd.DataFrame)
    assert list(features.index) == list(X_pd.index)
    assert list(features.columns) == pipe.named_steps["features"].feature_names_out_
    assert features["sex"].dtype == np.int32
    assert features["tbp_lv_H"].dtype == np.float32
    default = clone(pipe.named_steps["features"]).set_output(transform="default").fit(X)
    assert isinstance(default.transform(X), pl.DataFrame)


# -- groupings that differ, nulls in the outlier score, names -------------------------


def test_site_and_location_groupings_are_not_interchangeable(hand_frame) -> None:
    # Patient A: three lesions on "Torso Back" (one location group), but two sites plus
    # a missing site, which forms its own group. Swapping the two groupings in the plan
    # (or dropping the null-site group) changes these values.
    frame = hand_frame.with_columns(
        tbp_lv_location=pl.Series(["Torso Back Top Third"] * 3 + ["Head & Neck"]),
        tbp_lv_location_simple=pl.Series(["Torso Back"] * 3 + ["Head & Neck"]),
        anatom_site_general=pl.Series(["posterior torso", "posterior torso", None, "head/neck"]),
    )
    out = _features().fit_transform(frame)
    # location: sizes 2, 4, 6 in one group -> mean 4, sd 2
    np.testing.assert_allclose(
        _col(out, "clin_size_long_diam_mm__z_patient_location"),
        [-2 / (2 + EPS), 0.0, 2 / (2 + EPS), 0.0],
        rtol=1e-6,
    )
    # site: (2, 4) -> mean 3, sd sqrt(2); the null-site lesion is alone -> 0
    r2 = math.sqrt(2.0)
    np.testing.assert_allclose(
        _col(out, "clin_size_long_diam_mm__z_patient_site"),
        [-1 / (r2 + EPS), 1 / (r2 + EPS), 0.0, 0.0],
        rtol=1e-6,
    )
    np.testing.assert_allclose(_col(out, "n_lesions_patient_site"), [2, 2, 1, 1])
    np.testing.assert_allclose(_col(out, "n_lesions_patient_location"), [3, 3, 3, 1])


def test_outlier_score_averages_over_the_key_columns_present() -> None:
    X, _ = split_xy(make_tiny_metadata(n_patients=2, lesions=6, seed=5))
    X = X.with_columns(
        pl.when(pl.int_range(pl.len()) == 1)
        .then(None)
        .otherwise(pl.col(OUTLIER_COLUMNS[0]))
        .alias(OUTLIER_COLUMNS[0])
    )
    out = _features(groups=("patient", "derived", "outlier")).fit_transform(X)
    z = np.column_stack([_col(out, f"{c}__z_patient") for c in OUTLIER_COLUMNS])
    assert np.isnan(z[1, 0]) and not np.isnan(np.delete(z, 1, axis=0)).any()
    expected = np.sqrt(np.nanmean(z**2, axis=1))  # row 1: the mean of 15 squares, not 16
    np.testing.assert_allclose(_col(out, "outlier_score"), expected, rtol=1e-5)


def test_string_groups_and_extra_survive_the_json_round_trip() -> None:
    X, _ = split_xy(make_tiny_metadata(n_patients=2, lesions=4, seed=1))
    X = X.with_columns(img_score=pl.Series(np.linspace(0.0, 1.0, X.height)))
    fitted = _features(groups="derived", extra_numeric="img_score").fit(X)
    state = json.loads(json.dumps(fitted.to_dict()))
    assert state["params"]["groups"] == ["derived"]
    assert state["params"]["extra_numeric"] == ["img_score"]
    assert LesionFeaturizer.from_dict(state).transform(X).equals(fitted.transform(X))
    state["params"]["groups"] = ["not-a-group"]
    with pytest.raises(ModelFileError, match="invalid parameters.*not-a-group"):
        LesionFeaturizer.from_dict(state)


@pytest.mark.parametrize(
    "extra",
    [
        ("outlier_score",),
        ("__key_patient",),
        ("tbp_lv_H__z_patient",),
        ("score", "score__z_patient"),
    ],
)
def test_extra_names_that_collide_with_outputs_are_refused(extra) -> None:
    X, _ = split_xy(make_tiny_metadata(n_patients=2, lesions=3))
    X = X.with_columns(pl.lit(1.0).alias(name) for name in extra)
    with pytest.raises(ValueError, match=f"name\\(s\\) '{extra[-1]}' clash"):
        _features(extra_numeric=extra).fit(X)


def test_values_beyond_any_measurement_are_refused_by_name() -> None:
    X, _ = split_xy(make_tiny_metadata(n_patients=2, lesions=3))
    fitted = _features().fit(X)
    bad = X.with_columns(
        pl.when(pl.int_range(pl.len()) == 4)
        .then(1e200)
        .otherwise(pl.col("tbp_lv_x"))
        .alias("tbp_lv_x")
    )
    with pytest.raises(SchemaError, match=r"'tbp_lv_x' = 1e\+200 at row 4"):
        fitted.transform(bad)
    fitted.transform(X.with_columns(tbp_lv_x=pl.lit(float("inf"))))  # inf is missing, as before
