"""Calibrated risk: a logistic map fitted on out-of-fold scores, kept by the model and its files."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from scipy import special

import lesionboost as lb
from lesionboost.calibration import ScoreCalibrator

FAST = {"members": ("lightgbm",), "n_bags": 1, "lightgbm_params": {"n_estimators": 20}}


def test_the_calibrator_recovers_a_known_logistic_distortion() -> None:
    rng = np.random.default_rng(0)
    true_logit = rng.normal(-5.0, 1.5, 200_000)
    y = (rng.random(true_logit.size) < special.expit(true_logit)).astype(int)
    # a model whose log-odds are 2x too steep and shifted by +1.5
    distorted = special.expit(1.5 + 2.0 * true_logit)
    calibrator = ScoreCalibrator.fit(y, distorted)
    # inverting p = expit(1.5 + 2 t): t = (logit(p) - 1.5) / 2
    assert calibrator.slope == pytest.approx(0.5, abs=0.03)
    assert calibrator.intercept == pytest.approx(-0.75, abs=0.15)
    assert calibrator.transform(distorted).mean() == pytest.approx(y.mean(), rel=0.02)
    # increasing: the ranking is unchanged
    order = np.argsort(distorted, kind="stable")
    assert np.all(np.diff(calibrator.transform(distorted)[order]) >= 0)


def test_the_calibrator_refuses_scores_that_are_not_probabilities_or_do_not_rank() -> None:
    y = np.array([0, 0, 1, 1])
    with pytest.raises(ValueError, match="probabilities in"):
        ScoreCalibrator.fit(y, np.array([-2.0, 0.1, 0.5, 3.0]))
    with pytest.raises(ValueError, match="both benign and malignant"):
        ScoreCalibrator.fit(np.zeros(4), np.array([0.1, 0.2, 0.3, 0.4]))
    with pytest.raises(ValueError, match="slope"):
        ScoreCalibrator.fit(
            np.array([1, 1, 0, 0, 1, 0]), np.array([0.1, 0.2, 0.8, 0.9, 0.15, 0.85])
        )
    with pytest.raises(ValueError, match="positive"):
        ScoreCalibrator.from_dict(
            {"method": "logistic", "intercept": 0.0, "slope": -1.0, "n": 4, "n_malignant": 2}
        )


def test_a_calibrated_model_keeps_its_ranking_and_its_calibrator_in_the_model_folder(
    tmp_path,
) -> None:
    sim = lb.simulate_slice3d(40, seed=0)
    train = sim.train
    X, y = lb.split_xy(train)
    folds = lb.patient_folds(train, n_splits=3, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lb.DataWarning)
        oof = lb.cross_val_oof(lb.LesionBoostClassifier(**FAST), train, folds, progress=False)
        model = lb.LesionBoostClassifier(**FAST).fit(X, y)
        raw = model.predict_proba(X)[:, 1]
        before = model.predict(X)
        model.calibrate(y, oof.oof)
        calibrated = model.predict_proba(X)[:, 1]
        after = model.predict(X)
    # the label follows the probability the model reports, calibrated or not
    np.testing.assert_array_equal(before, (raw > 0.5).astype(int))
    np.testing.assert_array_equal(after, (calibrated > 0.5).astype(int))
    assert model.calibrator_ is not None
    saved = model.calibrator_
    model.calibrator_ = {**saved, "intercept": 8.0, "slope": 1.0}  # raises every risk
    shifted = model.predict_proba(X)[:, 1]
    assert (shifted > 0.5).any() and not (raw > 0.5).all()
    np.testing.assert_array_equal(model.predict(X), (shifted > 0.5).astype(int))
    model.calibrator_ = saved
    assert not np.allclose(raw, calibrated)
    np.testing.assert_array_equal(
        np.argsort(raw, kind="stable"), np.argsort(calibrated, kind="stable")
    )
    expected = ScoreCalibrator.fit(y, oof.oof).transform(raw)
    np.testing.assert_allclose(calibrated, expected)
    lb.save_model(model, tmp_path / "m")
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["estimator"]["calibrator"]["method"] == "logistic"
    reloaded = lb.load_model(tmp_path / "m")
    np.testing.assert_array_equal(reloaded.predict_proba(X)[:, 1], calibrated)
    refit = model.fit(X, y)  # a refit drops the calibration of the previous fit
    assert refit.calibrator_ is None
