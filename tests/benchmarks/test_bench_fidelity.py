"""``benchmarks/fidelity.py``: its functions on a small simulation, and ``--small`` end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from _bench import check_tables, import_benchmark, run_small
from lesionboost.schema import NUMERIC_COLUMNS
from lesionboost.simulate import SCENARIOS, simulate_slice3d


@pytest.fixture(scope="module")
def fidelity():  # type: ignore[no-untyped-def]
    return import_benchmark("fidelity.py")


@pytest.fixture(scope="module")
def sim_frame() -> pl.DataFrame:
    return simulate_slice3d(120, seed=2).train


def test_ks_is_zero_against_itself_and_large_against_a_shift(
    fidelity, sim_frame: pl.DataFrame
) -> None:
    benign = sim_frame.filter(pl.col("target") == 0)
    half = benign.sample(fraction=0.5, seed=0)
    ks = fidelity.ks_by_column(half, benign)
    assert set(ks) == set(NUMERIC_COLUMNS)
    assert max(ks.values()) < 0.05
    shifted = benign.with_columns(pl.col("tbp_lv_H") + 10.0)
    assert fidelity.ks_by_column(shifted, benign)["tbp_lv_H"] > 0.5


def test_univariate_aucs_and_spearman(fidelity, sim_frame: pl.DataFrame) -> None:
    aucs = fidelity.univariate_aucs(sim_frame)
    assert set(aucs) == set(NUMERIC_COLUMNS)
    assert all(0.0 <= v <= 1.0 for v in aucs.values())
    assert aucs["tbp_lv_H"] < 0.45  # malignant lesions are redder (lower hue)
    benign = sim_frame.filter(pl.col("target") == 0)
    same = fidelity.spearman_difference(benign, benign)
    assert same["mean_abs_diff"] == pytest.approx(0.0, abs=1e-12)
    noise = benign.with_columns(pl.col("tbp_lv_L").shuffle(seed=1))
    assert fidelity.spearman_difference(noise, benign)["max_abs_diff"] > 0.5


def test_categorical_and_structure_summaries(fidelity, sim_frame: pl.DataFrame) -> None:
    cats = fidelity.categorical_frequencies(sim_frame)
    assert set(cats) == {
        "attribution",
        "anatom_site_general",
        "tbp_tile_type",
        "sex",
        "tbp_lv_location",
    }
    assert cats["tbp_lv_location"]["max_abs_diff"] < 0.05
    shares = [level["sim"] for level in cats["attribution"]["levels"].values()]
    assert sum(shares) == pytest.approx(1.0, abs=1e-3)
    s = fidelity.structure(sim_frame)
    assert s["rows"] == sim_frame.height and s["patients"] == 120
    assert s["positives"] == int(sim_frame["target"].sum())
    assert sum(k * v for k, v in s["positives_per_positive_patient"].items()) == s["positives"]
    assert s["lesion_id_malignant_pct"] == 100.0


def test_followup_aucs_use_lesion_id_among_benign_lesions(
    fidelity, sim_frame: pl.DataFrame
) -> None:
    aucs = fidelity.followup_aucs(sim_frame)
    assert set(aucs) == set(NUMERIC_COLUMNS)
    assert aucs["tbp_lv_symm_2axis"] < 0.45  # followed-up naevi are regular, as in the real sample
    # A label unrelated to the columns gives AUCs near 0.5.
    shuffled = sim_frame.with_columns(pl.col("lesion_id").shuffle(seed=3))
    assert abs(fidelity.followup_aucs(shuffled)["tbp_lv_symm_2axis"] - 0.5) < 0.06
    report = {"followup_auc": {"top8_max_gap": 0.07}}
    assert fidelity.checks(report) == {"followup_auc_top8": False}


def test_followup_model_aucs_learn_follow_up_from_benign_rows_only(
    fidelity, sim_frame: pl.DataFrame
) -> None:
    aucs = fidelity.followup_model_aucs(sim_frame, n_benign=3000, n_splits=3)
    assert aucs["followup_auc"] > 0.75
    assert aucs["malignancy_auc"] < 0.85
    # Malignant lesions all have a lesion_id; give them a column value of their own.
    # A model that (wrongly) learned follow-up from them would rank by it.
    marked = sim_frame.with_columns(
        pl.when(pl.col("target") == 1)
        .then(500.0)
        .otherwise(pl.col("tbp_lv_symm_2axis_angle"))
        .alias("tbp_lv_symm_2axis_angle")
    )
    marked_aucs = fidelity.followup_model_aucs(marked, n_benign=3000, n_splits=3)
    assert marked_aucs["malignancy_auc"] < 0.85
    # Follow-up shuffled among the benign rows carries nothing to learn.
    benign = sim_frame.filter(pl.col("target") == 0)
    shuffled = pl.concat(
        [
            benign.with_columns(pl.col("lesion_id").shuffle(seed=4)),
            sim_frame.filter(pl.col("target") == 1),
        ]
    )
    shuffled_aucs = fidelity.followup_model_aucs(shuffled, n_benign=3000, n_splits=3)
    assert abs(shuffled_aucs["followup_auc"] - 0.5) < 0.1
    report = {"followup_model": {"real": {"malignancy_auc": 0.84}, "sim": {"malignancy_auc": 0.68}}}
    assert fidelity.checks(report) == {"followup_malignancy_auc": False}


def test_lightgbm_oof_scores_every_row_out_of_fold(fidelity, sim_frame: pl.DataFrame) -> None:
    oof = fidelity.lightgbm_oof(sim_frame, patient_features=False, n_splits=3)
    assert oof.shape == (sim_frame.height,) and np.isfinite(oof).all()
    assert 0.0 <= oof.min() and oof.max() <= 1.0
    wide = fidelity._patient_matrix(sim_frame)
    assert wide.shape[1] > len(NUMERIC_COLUMNS) * 2


def test_checks_flag_values_outside_the_targets(fidelity) -> None:
    report = {"pauc": {"oracle": 0.19, "tabular_oracle": 0.10, "raw_lightgbm": 0.13}}
    checks = fidelity.checks(report)
    assert checks == {"pauc_oracle": True, "pauc_tabular_oracle": False, "pauc_raw_lightgbm": True}
    speed = {"speed": {"simulate_seconds": 31.0, "crops_per_second_one_core": 1500.0}}
    assert fidelity.checks(speed) == {"simulate_seconds": False, "crops_per_second_one_core": True}


def test_fidelity_benchmark_small_mode_smoke(tmp_path: Path) -> None:
    report, stdout = run_small("fidelity.py", tmp_path / "fidelity.json", timeout=300)
    assert report["settings"]["small"] is True
    assert {"structure", "categorical", "pauc", "checks"} <= set(report)
    # the oracle knows the risk: far above a score without skill (pAUC 0.02)
    assert report["pauc"]["tabular_oracle"] > 0.07
    assert report["pauc"]["oracle"] >= report["pauc"]["tabular_oracle"] - 0.02
    assert "simulator fidelity" in stdout
    with_sample = "ks" in report  # the shared real sample is present
    absent = () if with_sample else ("fidelity/univariate_auc", "fidelity/followup_auc")
    tables = check_tables(report, "fidelity", absent=absent)
    checks = {row[0]: row for row in tables["fidelity/checks"].rows}
    structure = report["structure"]
    assert checks["rows / positives / prevalence"][2].startswith(f"{structure['rows']:,} / ")
    speed = checks["full-size metadata / crops"]
    assert speed[1] == "< 30 s / >= 1,000 crops/s on one core" and speed[2] == "--"  # not timed
    if with_sample:
        auc = report["auc"]
        rows = tables["fidelity/univariate_auc"].rows
        assert [row[0] for row in rows] == [f"`{c}`" for c in auc["top10"]]
        first = auc["top10"][0]
        assert rows[0][3] == f"{auc['sim'][first] - auc['real'][first]:+.3f}"
        assert len(tables["fidelity/followup_auc"].rows) == 8
    # every world is drawn and summarised; the default world is the cohort above
    worlds = report["scenarios"]
    assert list(worlds) == list(SCENARIOS)
    assert worlds["default"]["pauc"]["oracle"] == report["pauc"]["oracle"]
    assert worlds["default"]["malignant"] == structure["positives"]
    rows = tables["fidelity/scenarios"].rows
    assert [row[0] for row in rows] == [f"`{name}`" for name in SCENARIOS]
    assert len({world["malignant"] for world in worlds.values()}) > 1  # the labels differ by world
    if with_sample:
        assert worlds["default"]["ks"]["median"] == pytest.approx(report["ks"]["median"])


def test_scenario_summary_reads_the_oracle_and_the_real_sample(
    fidelity, sim_frame: pl.DataFrame
) -> None:
    y = sim_frame.get_column("target").to_numpy()
    logit = np.where(y == 1, 2.0, -8.0)  # separates the classes perfectly
    oracle = pl.DataFrame({"logit": logit, "tabular_logit": -logit})
    world = fidelity.scenario_summary(sim_frame, oracle)
    assert world["malignant"] == int(y.sum())
    assert world["expected_prevalence_pct"] == pytest.approx(
        100 * (1 / (1 + np.exp(-logit))).mean()
    )
    assert world["pauc"]["oracle"] == pytest.approx(0.2)  # the maximum above 80 % TPR
    assert world["pauc"]["tabular_oracle"] == pytest.approx(0.0)
    assert "ks" not in world
    # against itself as the "real" sample: no KS distance, no AUC move
    same = fidelity.scenario_summary(sim_frame, oracle, real=sim_frame)
    assert same["ks"] == {"median": 0.0, "max": 0.0}
    assert same["auc_top10"]["max_gap"] == 0.0
