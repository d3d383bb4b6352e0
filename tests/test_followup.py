"""The follow-up score: a model of which benign lesions were followed up (``lesion_id``)."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold

import lesionboost as lb
from lesionboost import DataWarning, ModelFileError, SchemaError
from lesionboost.estimator import (
    FOLLOWUP_COLUMN,
    FollowupModel,
    LesionBoostClassifier,
    cross_val_oof,
)
from lesionboost.estimator._followup import INNER_FOLDS, cross_fitted_followup
from lesionboost.features import LesionFeaturizer
from lesionboost.model_selection import patient_folds
from lesionboost.persist import _canonical, _sha256, load_model, save_model

FAST = dict(
    members=("lightgbm", "linear"),
    n_bags=1,
    lightgbm_params={"n_estimators": 15},
    linear_params={"C": 0.1},
    n_jobs=1,
)


@pytest.fixture(scope="module")
def train() -> pl.DataFrame:
    return lb.simulate_slice3d(40, seed=3).train


def _followed(frame: pl.DataFrame) -> np.ndarray:
    return frame.get_column("lesion_id").is_not_null().to_numpy()


def test_the_model_ranks_followed_up_lesions_of_other_patients_first(train):
    y = train["target"].to_numpy()
    followed = _followed(train)
    folds = patient_folds(train, n_splits=2, seed=0)
    model = FollowupModel.fit(train, followed, (y == 0) & (folds == 0))
    held = (y == 0) & (folds == 1)
    score = model.score(train.filter(pl.Series(held)))
    assert roc_auc_score(followed[held], score) > 0.75
    # stored as JSON and rebuilt to the same scores
    again = FollowupModel.from_dict(model.to_dict())
    assert np.array_equal(again.score(train), model.score(train))
    with pytest.raises(ValueError, match="not a lesionboost follow-up model"):
        FollowupModel.from_dict({"format": "other"})


def test_a_lesion_is_scored_by_models_that_never_saw_its_patient(train):
    y = train["target"].to_numpy()
    followed = _followed(train)
    _, scores = cross_fitted_followup(train, y, followed, seed=0)
    patients = train["patient_id"].rank("dense").to_numpy()
    splitter = GroupKFold(n_splits=INNER_FOLDS, shuffle=True, random_state=0)
    inner = np.zeros(train.height, dtype=int)
    for fold, (_, held) in enumerate(splitter.split(patients, groups=patients)):
        inner[held] = fold
    # flipping the follow-up labels of fold 0's patients leaves their scores as they were
    # and moves everyone else's (their models trained on those labels)
    flipped = np.where(inner == 0, ~followed, followed)
    _, again = cross_fitted_followup(train, y, flipped, seed=0)
    assert np.array_equal(again[inner == 0], scores[inner == 0])
    assert not np.allclose(again[inner != 0], scores[inner != 0])


def test_the_score_is_an_own_column_of_the_lesion_and_lesion_id_never_a_feature(train, monkeypatch):
    seen = {}
    real_fit = LesionFeaturizer.fit

    def recording(self, X, y=None):
        seen["frame"] = X
        return real_fit(self, X, y)

    monkeypatch.setattr(LesionFeaturizer, "fit", recording)
    model = LesionBoostClassifier(followup=True, **FAST).fit(train)
    names = model.featurizer_.feature_names_out_
    assert FOLLOWUP_COLUMN in names and f"{FOLLOWUP_COLUMN}__z_patient" in names
    assert not any(name.startswith("lesion_id") for name in names)
    assert FOLLOWUP_COLUMN in model.ensemble_.views["raw"]
    # the training lesions' scores are the cross-fitted ones, not the final model's
    y = train["target"].to_numpy()
    _, crossed = cross_fitted_followup(train, y, _followed(train), seed=0)
    fitted_on = seen["frame"].get_column(FOLLOWUP_COLUMN).to_numpy()
    assert np.array_equal(fitted_on, crossed)
    assert not np.allclose(fitted_on, model.followup_.score(train))
    # the score is the model's own column, not an input of X
    assert FOLLOWUP_COLUMN not in model.feature_names_in_
    without = LesionBoostClassifier(followup=False, **FAST).fit(train)
    assert without.followup_ is None and model.n_features_in_ == without.n_features_in_
    # the same labels given as followed_up (X without lesion_id) fit the same model
    X, y = lb.split_xy(train)
    followed = train["lesion_id"].is_not_null()  # a polars Series, as the docs show
    other = LesionBoostClassifier(followup=True, **FAST).fit(X, y, followed_up=followed)
    assert np.array_equal(other.predict_proba(X), model.predict_proba(X))


def test_the_follow_up_model_is_saved_as_json_and_predicts_the_same(train, tmp_path):
    model = LesionBoostClassifier(followup="auto", **FAST).fit(train)
    assert model.followup_ is not None
    save_model(model, tmp_path / "model")
    loaded = load_model(tmp_path / "model")
    assert isinstance(loaded.followup_, FollowupModel)
    assert np.array_equal(loaded.predict_proba(train), model.predict_proba(train))
    # a manifest whose estimator state lost the follow-up model is refused at load
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    manifest["estimator"]["followup"] = None
    manifest["manifest_sha256"] = _sha256(_canonical(manifest))
    (tmp_path / "model" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="follow-up score"):
        load_model(tmp_path / "model")


def test_the_score_is_on_by_default_and_ignores_the_simulators_oracle_columns():
    sim = lb.simulate_slice3d(40, seed=3, n_test_patients=10)
    model = LesionBoostClassifier(**FAST).fit(sim.train)
    assert model.followup_ is not None and model.followup_.column == FOLLOWUP_COLUMN
    # the oracle's own follow-up term (column followup_score) is no input of the model
    test = sim.test.join(sim.test_oracle, on="isic_id", how="left", maintain_order="left")
    assert "followup_score" in test.columns
    np.testing.assert_array_equal(model.predict_proba(test), model.predict_proba(sim.test))


def test_a_format_3_folder_loads_with_the_score_column_it_was_saved_with(
    train, tmp_path, monkeypatch
):
    # format 3 stored no column name; its score column was called followup_score
    monkeypatch.setattr("lesionboost.estimator._followup.FOLLOWUP_COLUMN", "followup_score")
    model = LesionBoostClassifier(followup=True, **FAST).fit(train)
    assert "followup_score__z_patient" in model.featurizer_.feature_names_out_
    save_model(model, tmp_path / "model")
    monkeypatch.undo()
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    del manifest["estimator"]["followup"]["column"]
    manifest["format_version"] = 3
    manifest["manifest_sha256"] = _sha256(_canonical(manifest))
    (tmp_path / "model" / "manifest.json").write_text(json.dumps(manifest))
    loaded = load_model(tmp_path / "model")
    assert loaded.followup_.column == "followup_score"
    np.testing.assert_array_equal(loaded.predict_proba(train), model.predict_proba(train))
    # a fresh fit names the column FOLLOWUP_COLUMN
    assert (
        LesionBoostClassifier(followup=True, **FAST).fit(train).followup_.column == "followup_logit"
    )


def test_auto_goes_without_the_score_when_the_data_cannot_say(train):
    X, y = lb.split_xy(train)  # no lesion_id
    model = LesionBoostClassifier(followup="auto", **FAST).fit(X, y)
    assert model.followup_ is None
    assert FOLLOWUP_COLUMN not in model.featurizer_.feature_names_out_
    few = _followed(train) & (np.cumsum(_followed(train)) <= 5)
    with pytest.warns(DataWarning, match="5 followed-up benign lesions"):
        fitted = LesionBoostClassifier(followup="auto", **FAST).fit(X, y, followed_up=few)
    assert fitted.followup_ is None
    # every followed-up lesion in one patient: the other patient fold has none to fit on
    first = (train["patient_id"] == train["patient_id"][0]).to_numpy()
    one_patient = first & (y.to_numpy() == 0)
    with pytest.warns(DataWarning, match="patients outside each of its 2 patient folds"):
        fitted = LesionBoostClassifier(followup="auto", **FAST).fit(X, y, followed_up=one_patient)
    assert fitted.followup_ is None
    with pytest.raises(ValueError, match="patients outside each of its 2 patient folds"):
        LesionBoostClassifier(followup=True, **FAST).fit(X, y, followed_up=one_patient)


def test_bad_follow_up_settings_are_refused_before_any_work(train):
    X, y = lb.split_xy(train)
    with pytest.raises(SchemaError, match="lesion_id column, or followed_up="):
        LesionBoostClassifier(followup=True, **FAST).fit(X, y)
    with pytest.raises(ValueError, match="followup must be 'auto', True or False"):
        LesionBoostClassifier(followup="yes", **FAST).fit(train)
    with pytest.raises(ValueError, match=r"followed_up has shape \(3,\)"):
        LesionBoostClassifier(followup=True, **FAST).fit(X, y, followed_up=[True, False, True])
    with pytest.raises(ValueError, match="followed_up must hold booleans"):
        LesionBoostClassifier(followup=True, **FAST).fit(X, y, followed_up=np.full(X.height, 2))
    with pytest.raises(ValueError, match="followed_up must hold booleans, got object"):
        LesionBoostClassifier(followup=True, **FAST).fit(X, y, followed_up=train["lesion_id"])
    with pytest.raises(SchemaError, match="lacks required column"):
        LesionBoostClassifier(followup=True, **FAST).fit(train.drop("tbp_lv_H"))
    with pytest.raises(ValueError, match="at least 20 followed-up benign lesions"):
        LesionBoostClassifier(followup=True, **FAST).fit(X, y, followed_up=np.zeros(X.height, bool))
    clash = train.with_columns(pl.lit(0.0).alias(FOLLOWUP_COLUMN))
    with pytest.raises(SchemaError, match=f"column '{FOLLOWUP_COLUMN}'"):
        LesionBoostClassifier(followup=True, **FAST).fit(clash)


def test_cross_validation_passes_each_fold_its_training_lesions_follow_up(train):
    folds = patient_folds(train, n_splits=2, seed=0)
    result = cross_val_oof(
        LesionBoostClassifier(followup=True, **FAST), train, folds, progress=False
    )
    assert np.isfinite(result.oof).all()
    # without lesion_id nothing says which lesions were followed up
    with pytest.raises(SchemaError, match="lesion_id column"):
        cross_val_oof(
            LesionBoostClassifier(followup=True, **FAST),
            train.drop("lesion_id"),
            folds,
            progress=False,
        )


def test_followup_offset_makes_the_score_the_boosters_starting_margin(train):
    model = LesionBoostClassifier(followup=True, followup_offset=True, **FAST).fit(train)
    ensemble = model.ensemble_
    assert ensemble.offset_column == FOLLOWUP_COLUMN
    assert list(ensemble.feature_names_in_).index(FOLLOWUP_COLUMN) == ensemble.offset_column_
    assert ensemble.offset_fits_[0][1] > 0  # followed-up lesions are the likelier cancers
    plain = LesionBoostClassifier(followup=True, **FAST).fit(train)
    assert plain.ensemble_.offset_column_ is None
    assert not np.array_equal(model.predict_proba(train), plain.predict_proba(train))
    # without the score there is nothing to start from
    X, y = lb.split_xy(train)
    assert (
        LesionBoostClassifier(followup_offset=True, **FAST).fit(X, y).ensemble_.offset_column_
        is None
    )
    with pytest.raises(ValueError, match="followup_offset must be True or False, got 'yes'"):
        LesionBoostClassifier(followup_offset="yes", **FAST).fit(train)
