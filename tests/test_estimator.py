"""LesionBoostClassifier over raw metadata, cross_val_oof, explain, model files."""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.model_selection import StratifiedGroupKFold, cross_val_score

from conftest import make_tiny_metadata
from lesionboost import DataWarning, OptionalDependencyError, SchemaError
from lesionboost.cv import patient_folds
from lesionboost.estimator import LesionBoostClassifier, OOFResult, cross_val_oof
from lesionboost.metrics import pauc_above_tpr, pauc_scorer
from lesionboost.persist import load_model, save_model
from lesionboost.schema import LEAK_COLUMNS

FAST = {
    "n_bags": 1,
    "n_jobs": 1,
    "neg_ratio": None,
    "feature_groups": ("derived", "patient"),
    "lightgbm_params": {"n_estimators": 20, "min_data_in_leaf": 5, "learning_rate": 0.2},
    "xgboost_params": {"n_estimators": 20, "learning_rate": 0.2},
    "catboost_params": {
        "n_estimators": 20,
        "depth": 3,
        "learning_rate": 0.2,
        "border_count": 16,
        "max_ctr_complexity": 1,
    },
}


def _fast(**overrides):
    return LesionBoostClassifier(**{**FAST, **overrides})


def signal_metadata(n_patients=60, lesions=12, seed=0) -> pl.DataFrame:
    """Tiny metadata where the malignant lesion is its patient's largest one ("ugly duckling")."""
    meta = make_tiny_metadata(n_patients=n_patients, lesions=lesions, seed=seed)
    size = pl.col("clin_size_long_diam_mm")
    largest = size == size.max().over("patient_id")
    chosen = pl.col("patient_id").str.slice(3).cast(pl.Int64) % 3 == 0
    return meta.with_columns((largest & chosen).cast(pl.Int64).alias("target"))


@pytest.fixture(scope="module")
def meta() -> pl.DataFrame:
    return signal_metadata()


@pytest.fixture(scope="module")
def fitted(meta):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return _fast().fit(meta)


def test_fit_predict_on_raw_metadata(meta, fitted):
    proba = fitted.predict_proba(meta)
    assert proba.shape == (meta.height, 2)
    assert list(fitted.classes_) == [0, 1]
    assert pauc_above_tpr(meta["target"], proba[:, 1]) > 0.1  # learns the ugly duckling
    assert fitted.featurizer_.feature_names_out_ == list(fitted.ensemble_.feature_names_in_)
    assert fitted.ensemble_.categorical_features_  # the featurizer's codes go in natively
    names = set(fitted.ensemble_.feature_names_in_)
    assert not names & set(LEAK_COLUMNS)
    assert not set(fitted.feature_names_in_) & set(LEAK_COLUMNS)


def test_pandas_and_polars_and_explicit_y_agree(meta, fitted):
    X = meta.drop(list(LEAK_COLUMNS))
    from_pandas = _fast().fit(X.to_pandas(), meta["target"].to_pandas())
    np.testing.assert_array_equal(
        from_pandas.predict_proba(X.to_pandas()), fitted.predict_proba(meta)
    )


def test_leak_columns_never_reach_the_model(meta, fitted):
    scrambled = meta.with_columns(
        pl.lit(1, dtype=pl.Int64).alias("target"),
        pl.lit("Malignant").alias("iddx_full"),
        pl.lit(0.0).alias("tbp_lv_dnn_lesion_confidence"),
    )
    np.testing.assert_array_equal(fitted.predict_proba(scrambled), fitted.predict_proba(meta))


def test_flat_parameters_reach_the_ensemble(meta):
    model = _fast().set_params(
        n_bags=2, blend="mean", neg_ratio=0.2, members=("lightgbm", "xgboost")
    )
    model.fit(meta)
    ensemble = model.ensemble_
    assert (ensemble.n_bags, ensemble.blend, ensemble.neg_ratio) == (2, "mean", 0.2)
    assert ensemble.members_ == ("lightgbm", "xgboost")
    assert len(ensemble.boosters_["lightgbm"]) == 2
    assert model.featurizer_.groups == ("derived", "patient")


def test_same_seed_same_scores(meta, fitted):
    again = clone(fitted).fit(meta)
    np.testing.assert_array_equal(again.predict_proba(meta), fitted.predict_proba(meta))


def test_sample_weight_reaches_the_ensemble_and_works_in_cross_val_score(meta, fitted):
    ones = _fast().fit(meta, sample_weight=np.ones(meta.height))
    np.testing.assert_array_equal(ones.predict_proba(meta), fitted.predict_proba(meta))
    # e.g. weight lesions by a train-only column before it is dropped
    weight = np.where(meta["clin_size_long_diam_mm"].to_numpy() > 5.0, 3.0, 1.0)
    weighted = _fast().fit(meta, sample_weight=weight)
    assert not np.array_equal(weighted.predict_proba(meta), fitted.predict_proba(meta))
    X = meta.to_pandas()
    cv = StratifiedGroupKFold(3)
    unweighted = cross_val_score(
        _fast(), X, X["target"], groups=X["patient_id"], cv=cv, scoring=pauc_scorer
    )
    scores = cross_val_score(
        _fast(),
        X,
        X["target"],
        groups=X["patient_id"],
        cv=cv,
        scoring=pauc_scorer,
        params={"sample_weight": weight},
    )
    assert scores.shape == (3,) and np.all((scores >= 0) & (scores <= 0.2))
    assert not np.array_equal(scores, unweighted)  # the weights reached every fold's fit
    with pytest.raises(ValueError, match="sample_weight has 3 entries but X has"):
        _fast().fit(meta, sample_weight=[1.0, 2.0, 3.0])


def test_cross_val_oof_hands_each_fold_its_training_weights(meta):
    class WeightSpy(PatientSpy):
        weights: list[np.ndarray] = []

        def fit(self, X, y, sample_weight=None):
            type(self).weights.append(sample_weight)
            return super().fit(X, y)

    WeightSpy.seen_in_fit, WeightSpy.scored, WeightSpy.weights = [], [], []
    folds = patient_folds(meta, n_splits=3, seed=0)
    weight = np.arange(meta.height, dtype=float)
    cross_val_oof(WeightSpy(), meta, folds, sample_weight=weight, progress=False)
    for fold, got in zip(np.unique(folds), WeightSpy.weights, strict=True):
        np.testing.assert_array_equal(got, weight[folds != fold])
    with pytest.raises(ValueError, match="sample_weight has 3 entries"):
        cross_val_oof(WeightSpy(), meta, folds, sample_weight=[1.0, 2.0, 3.0], progress=False)
    WeightSpy.weights = []
    cross_val_oof(WeightSpy(), meta, folds, sample_weight=2.0, progress=False)  # a scalar
    assert all(np.all(w == 2.0) for w in WeightSpy.weights)
    with pytest.raises(TypeError, match="PatientSpy.fit takes no sample_weight"):
        cross_val_oof(PatientSpy(), meta, folds, sample_weight=weight, progress=False)


def test_cross_val_score_with_patient_groups(meta):
    X = meta.to_pandas()
    scores = cross_val_score(
        _fast(),
        X,
        X["target"],
        groups=X["patient_id"],
        cv=StratifiedGroupKFold(3),
        scoring=pauc_scorer,
    )
    assert scores.shape == (3,) and np.all((scores >= 0) & (scores <= 0.2))


class PatientSpy(ClassifierMixin, BaseEstimator):
    """Scores each lesion by its size and records which patients each fit saw."""

    seen_in_fit: list[set[str]] = []
    scored: list[tuple[int, set[str]]] = []

    def fit(self, X, y):
        self.patients_ = set(X["patient_id"].to_list())
        type(self).seen_in_fit.append(self.patients_)
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X):
        type(self).scored.append((len(type(self).seen_in_fit) - 1, set(X["patient_id"].to_list())))
        s = X["clin_size_long_diam_mm"].to_numpy()
        s = s / s.max()
        return np.column_stack([1 - s, s])


def test_cross_val_oof_never_scores_a_patient_with_a_model_that_saw_it(meta):
    PatientSpy.seen_in_fit, PatientSpy.scored = [], []
    folds = patient_folds(meta, n_splits=4, seed=1)
    result = cross_val_oof(PatientSpy(), meta, folds, progress=False)
    assert len(PatientSpy.seen_in_fit) == 4
    for fit_index, patients in PatientSpy.scored:
        assert not patients & PatientSpy.seen_in_fit[fit_index]
    all_patients = set(meta["patient_id"].to_list())
    assert set().union(*(p for _, p in PatientSpy.scored)) == all_patients
    assert np.isfinite(result.oof).all()
    # each row's score came from its own fold's model
    for fold in range(4):
        rows = folds == fold
        size = meta["clin_size_long_diam_mm"].to_numpy()[rows]
        np.testing.assert_allclose(result.oof[rows], size / size.max())


def test_cross_val_oof_result(meta):
    folds = patient_folds(meta, n_splits=3, seed=0)
    result = cross_val_oof(_fast(), meta, folds, progress=False)
    assert isinstance(result, OOFResult)
    assert result.oof.shape == (meta.height,) and np.isfinite(result.oof).all()
    assert result.fold_scores.shape == (3,) and result.fit_seconds.shape == (3,)
    assert result.pauc == pytest.approx(pauc_above_tpr(meta["target"], result.oof))
    for fold in range(3):
        rows = folds == fold
        assert result.fold_scores[fold] == pytest.approx(
            pauc_above_tpr(meta["target"].to_numpy()[rows], result.oof[rows])
        )
    summary = result.to_dict()
    assert summary["n_folds"] == 3 and "oof" not in summary
    assert len(result.to_dict(include_oof=True)["oof"]) == meta.height
    same = cross_val_oof(_fast(), meta, 3, progress=False)  # an int draws patient_folds(seed=0)
    np.testing.assert_array_equal(same.oof, result.oof)


def test_cross_val_oof_rejects_folds_that_split_a_patient(meta):
    folds = np.arange(meta.height) % 3
    with pytest.raises(ValueError, match="appear in more than one fold"):
        cross_val_oof(_fast(), meta, folds, progress=False)
    with pytest.raises(ValueError, match="one fold id per lesion"):
        cross_val_oof(_fast(), meta, folds[:-1], progress=False)
    with pytest.raises(SchemaError, match="needs labels"):
        cross_val_oof(_fast(), meta.drop("target"), patient_folds(meta), progress=False)


def test_explain_returns_top_features_per_lesion(meta, fitted):
    table = fitted.explain(meta.head(6), top_k=3)
    assert table.columns == ["isic_id", "score", "top_features", "top_contributions"]
    assert table["isic_id"].to_list() == meta["isic_id"].head(6).to_list()
    np.testing.assert_allclose(table["score"], fitted.predict_proba(meta.head(6))[:, 1])
    names = set(fitted.ensemble_.feature_names_in_)
    for features, values in zip(table["top_features"], table["top_contributions"], strict=True):
        assert len(features) == 3 and set(features) <= names
        assert list(values) == sorted(values, reverse=True)
    with pytest.raises(ValueError, match="top_k"):
        fitted.explain(meta.head(2), top_k=0)


def test_explain_per_patient_explains_each_patient_s_top_lesions_as_without_it(meta, fitted):
    X = meta.head(120)  # ten patients of twelve lesions
    full = fitted.explain(X, top_k=2)
    some = fitted.explain(X, top_k=2, per_patient=3)
    np.testing.assert_array_equal(some["score"], full["score"])
    explained = some["top_features"].is_not_null().to_numpy()
    assert explained.sum() == 3 * X["patient_id"].n_unique()
    # the explained rows are each patient's three highest scores ...
    ranks = (
        X.select("patient_id")
        .with_columns(score=some["score"])
        .select(pl.col("score").rank("ordinal", descending=True).over("patient_id"))
        .to_series()
        .to_numpy()
    )
    np.testing.assert_array_equal(explained, ranks <= 3)
    # ... explained exactly as when every row is (every row still shapes the features)
    assert some.filter(explained).equals(full.filter(explained))
    assert some.filter(~explained)["top_contributions"].null_count() == (~explained).sum()
    with pytest.raises(ValueError, match="per_patient"):
        fitted.explain(X, per_patient=0)
    with pytest.raises(SchemaError, match="patient_id"):
        fitted.explain(X.drop("patient_id"), per_patient=2)


def test_top_rows_per_patient_breaks_ties_by_isic_id_then_row():
    from lesionboost.estimator._classifier import _top_rows_per_patient

    # patients interleaved; b has a tie at the top, c fewer rows than asked for
    frame = pl.DataFrame(
        {
            "patient_id": ["a", "b", "a", "b", "c", "b", "a", "b"],
            "isic_id": [
                "ISIC_7",
                "ISIC_5",
                "ISIC_3",
                "ISIC_2",
                "ISIC_1",
                "ISIC_9",
                "ISIC_4",
                "ISIC_8",
            ],
        }
    )
    score = np.array([0.2, 0.9, 0.8, 0.5, 0.1, 0.9, 0.2, 0.9])
    # a: 0.8 (row 2), then the tie 0.2 / 0.2 -> ISIC_4 (row 6) before ISIC_7 (row 0)
    # b: three rows tie at 0.9 -> ISIC_5 (row 1), ISIC_8 (row 7); c: its only row
    np.testing.assert_array_equal(_top_rows_per_patient(frame, score, 2), [1, 2, 4, 6, 7])
    # without isic_id the earlier row wins a tie
    np.testing.assert_array_equal(
        _top_rows_per_patient(frame.drop("isic_id"), score, 2), [0, 1, 2, 4, 5]
    )
    np.testing.assert_array_equal(_top_rows_per_patient(frame, score, 10), np.arange(8))


def test_explain_scores_are_the_calibrated_probabilities(meta):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        model = _fast().fit(meta)
    y = meta["target"].to_numpy()
    model.calibrate(y, model.predict_proba(meta)[:, 1])
    calibrated = model.predict_proba(meta.head(24))[:, 1]
    assert not np.allclose(
        calibrated, model.ensemble_.predict_proba(model.transform_features(meta.head(24)))[:, 1]
    )
    np.testing.assert_allclose(model.explain(meta.head(24))["score"], calibrated)


def test_image_parameters_need_images(meta):
    with pytest.raises(ValueError, match="image_model is set but images is None"):
        _fast(image_model="model.onnx").fit(meta)


def test_image_features_join_the_tabular_ones(meta, tmp_path):
    pytest.importorskip("onnxruntime", reason="image features need onnxruntime")
    from _crops import write_crops

    small = signal_metadata(n_patients=15, lesions=8, seed=2)
    images = write_crops(
        tmp_path / "crops.hdf5",
        small["isic_id"].to_list(),
        atypical=small["target"].to_numpy().astype(bool),
    )
    model = _fast(images=str(images)).fit(small)
    image_columns = [c for c in model.ensemble_.feature_names_in_ if c.startswith("img_")]
    assert image_columns
    proba = model.predict_proba(small)
    path = save_model(model, tmp_path / "model")
    np.testing.assert_array_equal(load_model(path).predict_proba(small), proba)


def test_missing_image_module_function_is_a_clear_error(meta, monkeypatch):
    import lesionboost.image as image_module

    # the image package resolves its names lazily: remove the name from both places
    monkeypatch.delattr(image_module, "image_feature_frame", raising=False)
    monkeypatch.delitem(image_module._SOURCES, "image_feature_frame")
    with pytest.raises(OptionalDependencyError, match="image_feature_frame"):
        _fast(images="crops.hdf5").fit(meta)


def test_rank_columns_reach_the_featurizer_and_survive_a_model_file(meta, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        model = _fast(rank_columns="key", members=("lightgbm",)).fit(meta)
    names = model.transform_features(meta.head(5)).columns
    ranked = [n for n in names if n.endswith("__rank_patient")]
    assert len(ranked) == 16  # the key columns of the outlier score
    assert not any("__rank_" in n for n in _fast(members=("lightgbm",)).fit(meta)
                   .transform_features(meta.head(5)).columns)  # fmt: skip
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.rank_columns == "key"
    np.testing.assert_array_equal(loaded.predict_proba(meta), model.predict_proba(meta))


def test_rules_on_the_raw_columns_split_only_on_them_and_survive_a_model_file(
    meta, tmp_path, monkeypatch
):
    from lesionboost.estimator import MEMBER_VIEWS

    linear = {"rules": 10, "rule_view": "raw"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        model = _fast(members=("linear",), linear_params=linear).fit(meta)
    names = list(model.ensemble_.feature_names_in_)
    split = set()
    for scorer in model.ensemble_.boosters_["linear"]:
        for tree in scorer.rules.dump_model()["tree_info"]:
            nodes = [tree["tree_structure"]]
            while nodes:
                node = nodes.pop()
                if "split_feature" in node:
                    split.add(names[node["split_feature"]])
                    nodes += [node["left_child"], node["right_child"]]
    assert split and split <= set(MEMBER_VIEWS["raw"])
    assert len(names) > len(split)  # the regression itself sees the derived features
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.linear_params == linear
    np.testing.assert_array_equal(loaded.predict_proba(meta), model.predict_proba(meta))
    # an unknown view is refused before the features are computed
    from lesionboost.features import LesionFeaturizer

    def no_features(*args, **kwargs):
        raise AssertionError("featurised before the parameters were checked")

    monkeypatch.setattr(LesionFeaturizer, "fit", no_features)
    with pytest.raises(ValueError, match=r"'rule_view'\] = 'lesion' is not a view.*\['raw'\]"):
        _fast(members=("linear",), linear_params={"rules": 5, "rule_view": "lesion"}).fit(meta)
    with pytest.raises(ValueError, match=r"'own_view'\] = 'lesion' is not a view.*\['raw'\]"):
        linear = {"context_scale": 0.5, "own_view": "lesion"}
        _fast(members=("linear",), linear_params=linear).fit(meta)
    with pytest.raises(ValueError, match=r"'context_scale'\] = 0.5 scales the columns outside"):
        _fast(members=("linear",), linear_params={"context_scale": 0.5}).fit(meta)


def test_a_context_penalty_on_the_raw_view_keeps_the_raw_columns_weight(meta, tmp_path):
    from lesionboost.estimator import MEMBER_VIEWS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        plain = _fast(members=("linear",), linear_params={"rules": 0}).fit(meta)
        linear = {"rules": 0, "context_scale": 0.2, "own_view": "raw"}
        model = _fast(members=("linear",), linear_params=linear).fit(meta)
    names = list(model.ensemble_.feature_names_in_)
    raw = np.array([name in MEMBER_VIEWS["raw"] for name in names])
    scorer = model.ensemble_.boosters_["linear"][0]
    reference = plain.ensemble_.boosters_["linear"][0]
    numeric = np.array(scorer.numeric)
    own = raw[numeric]
    context_share = np.abs(scorer.coef[: len(numeric)][~own]).sum()
    assert context_share < 0.5 * np.abs(reference.coef[: len(numeric)][~own]).sum()
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.linear_params == linear
    np.testing.assert_array_equal(loaded.predict_proba(meta), model.predict_proba(meta))


def test_model_directory_round_trip_is_bit_identical(meta, fitted, tmp_path):
    folds = patient_folds(meta, n_splits=3)
    metrics = cross_val_oof(PatientSpy(), meta, folds, progress=False)
    path = save_model(fitted, tmp_path / "model", metrics=metrics, training_data=meta)
    loaded = load_model(path)
    assert type(loaded) is LesionBoostClassifier
    assert loaded.get_params() == fitted.get_params()
    np.testing.assert_array_equal(loaded.predict_proba(meta), fitted.predict_proba(meta))
    assert loaded.explain(meta.head(3)).equals(fitted.explain(meta.head(3)))
    import json

    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["featurizer"]["feature_names_out_"] == fitted.featurizer_.feature_names_out_
    assert manifest["metrics"]["n_folds"] == 3
    assert manifest["training_data"]["positives"] == int(meta["target"].sum())


@pytest.mark.slow
def test_quickstart_example_runs(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "examples" / "quickstart.py"
    done = subprocess.run(
        [sys.executable, str(script), "--out", str(tmp_path / "model")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "out-of-fold pAUC above 80% TPR" in done.stdout
    assert (tmp_path / "model" / "manifest.json").is_file()
    assert type(load_model(tmp_path / "model")) is LesionBoostClassifier


class LabelReader(ClassifierMixin, BaseEstimator):
    """A careless classifier that would score lesions by any label column it is given."""

    def fit(self, X, y):
        self.classes_ = np.array([0, 1])
        self.columns_ = list(X.columns)
        return self

    def predict_proba(self, X):
        leaked = [c for c in LEAK_COLUMNS if c in X.columns]
        s = X[leaked[0]].cast(pl.Float64).to_numpy() if leaked else np.zeros(X.height)
        return np.column_stack([1 - s, s])


def test_cross_val_oof_hands_no_train_only_column_to_any_estimator(meta):
    folds = patient_folds(meta, n_splits=3, seed=0)
    result = cross_val_oof(LabelReader(), meta, folds, progress=False)
    assert result.pauc < 0.2  # reading 'target' would give the maximum, 0.2
    assert np.all(result.oof == 0.0)


def test_cross_val_oof_warns_when_it_cannot_check_patients(meta):
    folds = patient_folds(meta, n_splits=3, seed=0)
    anonymous = meta.drop("patient_id")
    with pytest.warns(DataWarning, match="no 'patient_id'"):
        cross_val_oof(LabelReader(), anonymous, folds, progress=False)
