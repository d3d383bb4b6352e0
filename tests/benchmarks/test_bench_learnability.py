"""``benchmarks/learnability.py``: the rebuilt risk terms are the simulator's, the fit is exact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import optimize

from _bench import check_tables, import_benchmark, run_small
from lesionboost.simulate import CENTRES, RiskModel, simulate_slice3d

learnability = import_benchmark("learnability.py")


@pytest.fixture(scope="module")
def small_sim():
    return simulate_slice3d(40, seed=3)


def test_risk_terms_from_the_file_reproduce_the_tabular_oracle(small_sim) -> None:
    F, centre = learnability.risk_terms(
        small_sim.train, small_sim.train_oracle["followup_score"].to_numpy()
    )
    rebuilt = RiskModel.from_tables().tabular_logit(F, centre)
    oracle = small_sim.train_oracle["tabular_logit"].to_numpy()
    np.testing.assert_allclose(rebuilt, oracle, atol=1e-4)


def test_the_likelihood_gradient_is_exact(small_sim) -> None:
    F, centre = learnability.risk_terms(
        small_sim.train, small_sim.train_oracle["followup_score"].to_numpy()
    )
    y = small_sim.train["target"].to_numpy().astype(float)
    model = learnability.WellSpecifiedRisk(len(CENTRES))
    n_params = model.n_terms + len(CENTRES) + 1
    theta = np.random.default_rng(0).uniform(0.1, 0.5, n_params)
    theta[-len(CENTRES) - 1 : -1] = -6.0
    error = optimize.check_grad(
        lambda t: model._loss(t, F, centre, y)[0], lambda t: model._loss(t, F, centre, y)[1], theta
    )
    assert error < 1e-3 * np.linalg.norm(model._loss(theta, F, centre, y)[1])


def test_learnability_benchmark_small_mode_smoke(tmp_path: Path) -> None:
    report, stdout = run_small("learnability.py", tmp_path / "learn.json", timeout=300)
    (run,) = report["runs"]
    assert run["positives"] > 0
    # every fit knows the risk's form: far above a score without skill (pAUC 0.02), and
    # the tabular oracle is the ceiling of what the columns allow
    for key in (
        "well_specified_oof_pauc",
        "well_specified_estimated_followup_oof_pauc",
        "well_specified_no_followup_oof_pauc",
    ):
        assert 0.07 < run[key] <= run["tabular_oracle_pauc"] + 0.01, key
    # even 20 rounds on 60 patients recover the direction of the latent follow-up score
    assert run["followup_estimate_spearman_benign"] > 0.3
    assert report["mean_tabular_oracle"] == pytest.approx(run["tabular_oracle_pauc"])
    raw, oracle = run["raw_lightgbm_oof_pauc"], run["tabular_oracle_pauc"]
    share = (run["well_specified_estimated_followup_oof_pauc"] - raw) / (oracle - raw)
    assert run["gap_closed"]["estimated"] == pytest.approx(share)
    assert report["gap_closed"]["estimated"]["per_seed"] == [pytest.approx(share)]
    assert "well-specified OOF pAUC" in stdout

    tables = check_tables(report, "learnability")
    fits = tables["learnability/fits"]
    assert [row[0] for row in fits.rows] == [label for _, label in learnability.FITS.values()]
    estimated = fits.rows[1]
    assert estimated[1] == f"{run['well_specified_estimated_followup_oof_pauc']:.4f}"
    assert estimated[2] == f"{100 * share:.0f} %"
    (headline,) = tables["learnability/headline"].rows
    assert headline[2].startswith(f"{100 * share:.0f} %")


def test_estimated_followup_tracks_the_oracle_score_out_of_fold(small_sim) -> None:
    import lesionboost as lb

    train = small_sim.train
    folds = lb.patient_folds(train, n_splits=2, seed=0)
    estimate = learnability.estimated_followup(train, folds, rounds=30)
    oracle = small_sim.train_oracle["followup_score"].to_numpy()
    benign = train["target"].to_numpy() == 0
    assert np.corrcoef(estimate[benign], oracle[benign])[0, 1] > 0.3
    # put on the calibration tables' benign scale (over all rows), not the oracle's
    tables = learnability.load_tables()["followup"]
    assert estimate.mean() == pytest.approx(tables["benign_mean"], abs=1e-9)
    assert estimate.std() == pytest.approx(tables["benign_sd"], rel=1e-9)
    # out of fold: erasing one fold's lesion_id leaves that fold's raw scores as they
    # were (the common rescaling to the benign scale moves, hence the correlation),
    # and changes those of the fold its model scores
    erase = (folds == 0) & (np.arange(train.height) % 2 == 0)  # half of fold 0's ids
    shuffled = train.with_columns(
        lesion_id=pl.when(pl.Series(erase))
        .then(pl.lit(None, dtype=pl.String))
        .otherwise(pl.col("lesion_id"))
    )
    again = learnability.estimated_followup(shuffled, folds, rounds=30)
    assert np.corrcoef(again[folds == 0], estimate[folds == 0])[0, 1] == pytest.approx(1, abs=1e-12)
    assert not np.allclose(again[folds == 1], estimate[folds == 1])
    assert np.unique(again[folds == 1]).size > 10  # a real model, not a constant
