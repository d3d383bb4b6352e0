"""evaluate(): patient-level bootstrap, operating points, calibration and subgroups."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import polars as pl
import pytest
from scipy.special import expit
from sklearn.metrics import roc_auc_score

import lesionboost
from lesionboost.evaluation import Evaluation, evaluate
from lesionboost.evaluation._bootstrap import _bootstrap_roc, _patient_codes, _patient_draws
from lesionboost.evaluation._subgroups import _individual_typology_angle, _skin_tone_bands
from lesionboost.exceptions import SchemaError
from lesionboost.metrics import lesions_per_cancer, pauc_above_tpr, top_k_sensitivity
from lesionboost.simulate import simulate_slice3d

N_BOOT = 200
SUBGROUPS = {"sex", "age_band", "anatom_site_general", "attribution", "tbp_tile_type", "skin_tone"}


@pytest.fixture(scope="module")
def cohort() -> tuple[pl.DataFrame, np.ndarray, np.ndarray]:
    train = simulate_slice3d(30, seed=0).train
    y = train.get_column("target").to_numpy()
    rng = np.random.default_rng(0)
    # informative but imperfect probabilities, with ties from rounding
    score = np.round(np.clip(0.03 + 0.25 * y + rng.normal(0, 0.08, y.size), 0, 1), 3)
    return train, y, score


@pytest.fixture(scope="module")
def result(cohort: tuple[pl.DataFrame, np.ndarray, np.ndarray]) -> Evaluation:
    train, y, score = cohort
    return evaluate(y, score, train, n_boot=N_BOOT, seed=0)


# ---------------------------------------------------------------- point estimates
def test_point_estimates_match_the_metrics(cohort, result: Evaluation) -> None:
    train, y, score = cohort
    assert result.n == train.height and result.n_malignant == int(y.sum())
    assert result.n_patients == train.get_column("patient_id").n_unique()
    assert result.pauc == pauc_above_tpr(y, score)
    assert result.auc == pytest.approx(roc_auc_score(y, score))
    assert result.top15_sensitivity == top_k_sensitivity(
        y, score, train.get_column("patient_id").to_numpy(), k=15
    )
    assert result.lesions_per_cancer == {
        s: lesions_per_cancer(y, score, s) for s in (0.80, 0.90, 0.95)
    }


def test_operating_points_against_a_threshold_scan(cohort, result: Evaluation) -> None:
    _, y, score = cohort
    assert [p["target_sensitivity"] for p in result.operating_points] == [0.80, 0.90, 0.95]
    for point in result.operating_points:
        target = point["target_sensitivity"]
        # the highest distinct score that still flags >= target of the cancers
        reaching = [t for t in np.unique(score) if (score[y == 1] >= t).mean() >= target]
        threshold = max(reaching)
        flagged = score >= threshold
        assert point["threshold"] == threshold
        assert point["n_flagged"] == int(flagged.sum())
        assert point["sensitivity"] == pytest.approx((score[y == 1] >= threshold).mean())
        assert point["specificity"] == pytest.approx((score[y == 0] < threshold).mean())
        assert point["referrals_per_1000"] == pytest.approx(1000 * flagged.mean())
        assert point["referrals_per_patient"] == pytest.approx(flagged.sum() / result.n_patients)


# ---------------------------------------------------------------------- bootstrap
def test_bootstrap_is_reproducible_and_seeded(cohort, result: Evaluation) -> None:
    train, y, score = cohort
    again = evaluate(y, score, train, n_boot=N_BOOT, seed=0)
    assert again.to_dict() == result.to_dict()
    other = evaluate(y, score, train, n_boot=N_BOOT, seed=1)
    assert other.pauc == result.pauc  # point estimates do not depend on the seed
    assert other.pauc_ci != result.pauc_ci
    assert other.auc_ci != result.auc_ci


def test_intervals_contain_the_point_estimate(result: Evaluation) -> None:
    assert result.n_boot_used == N_BOOT  # 19 cancers in 30 patients: rarely one class
    for value, interval in [
        (result.pauc, result.pauc_ci),
        (result.auc, result.auc_ci),
        (result.top15_sensitivity, result.top15_sensitivity_ci),
    ]:
        assert interval is not None
        low, high = interval
        assert low < high  # a non-degenerate interval
        assert low <= value <= high


def test_a_replicate_equals_the_metric_on_the_resampled_patients(cohort) -> None:
    train, y, score = cohort
    codes, n_patients = _patient_codes(train)
    counts = _patient_draws(n_patients, 12, seed=5)
    assert (counts.sum(axis=1) == n_patients).all()  # each replicate draws n patients
    pauc, auc, both = _bootstrap_roc(y, score, codes, counts, 0.8)
    for r in range(12):
        # materialise the replicate: each drawn copy of a patient brings all its lesions
        rows = np.concatenate(
            [np.flatnonzero(codes == p) for p in range(n_patients) for _ in range(counts[r, p])]
        )
        if np.unique(y[rows]).size < 2:
            assert not both[r]
            continue
        assert both[r]
        assert pauc[r] == pytest.approx(pauc_above_tpr(y[rows], score[rows]), abs=1e-12)
        assert auc[r] == pytest.approx(roc_auc_score(y[rows], score[rows]), abs=1e-12)


def test_single_class_replicates_are_skipped() -> None:
    # one malignant lesion in one of 6 patients: many replicates miss that patient
    meta = pl.DataFrame({"patient_id": np.repeat(np.arange(6), 4)})
    y = np.zeros(24, dtype=int)
    y[5] = 1
    score = np.linspace(0.9, 0.1, 24)
    out = evaluate(y, score, meta, n_boot=300, seed=0)
    # P(patient 1 never drawn in 6 draws) = (5/6)**6 = 0.33
    assert 150 < out.n_boot_used < 260
    assert out.pauc_ci is not None
    no_boot = evaluate(y, score, meta, n_boot=0)
    assert no_boot.pauc_ci is None and no_boot.auc_ci is None and no_boot.n_boot_used == 0


# ---------------------------------------------------------------------- subgroups
def test_subgroups_partition_the_lesions(result: Evaluation) -> None:
    assert set(result.subgroups) == SUBGROUPS
    for name, levels in result.subgroups.items():
        assert sum(lv["n"] for lv in levels) == result.n, name
        assert sum(lv["n_malignant"] for lv in levels) == result.n_malignant, name
        assert len({lv["level"] for lv in levels}) == len(levels)
        for lv in levels:
            defined = 0 < lv["n_malignant"] < lv["n"]
            assert (lv["pauc"] is not None) == defined
            assert (lv["auc"] is not None) == defined
            if lv["pauc_ci"] is not None:
                assert lv["pauc_ci"][0] <= lv["pauc_ci"][1]


def test_subgroup_values_match_a_direct_computation(cohort, result: Evaluation) -> None:
    train, y, score = cohort
    for lv in result.subgroups["sex"]:
        rows = (train.get_column("sex").fill_null("unknown") == lv["level"]).to_numpy()
        assert lv["n"] == int(rows.sum())
        assert lv["pauc"] == pauc_above_tpr(y[rows], score[rows])
    age = train.get_column("age_approx").to_numpy()
    levels = {lv["level"]: lv for lv in result.subgroups["age_band"]}
    assert levels[">=75"]["n"] == int((age >= 75).sum())
    assert levels["60-74"]["n"] == int(((age >= 60) & (age < 75)).sum())
    assert levels.get("unknown", {"n": 0})["n"] == int(np.isnan(age).sum())


def test_weakest_level_is_flagged() -> None:
    # 20 patients, 10 lesions each; women ranked perfectly, men poorly
    rng = np.random.default_rng(3)
    n = 200
    sex = np.repeat(["female", "male"], 100)
    y = np.zeros(n, dtype=int)
    y[::10] = 1  # 10 cancers per sex
    score = np.where(sex == "female", 0.5 * y + rng.uniform(0, 0.4, n), rng.uniform(0, 1, n))
    meta = pl.DataFrame({"patient_id": np.repeat(np.arange(20), 10), "sex": sex})
    out = evaluate(y, score, meta, n_boot=50)
    levels = {lv["level"]: lv for lv in out.subgroups["sex"]}
    assert levels["female"]["pauc"] == pytest.approx(0.2)
    assert levels["male"]["weakest"] and not levels["female"]["weakest"]
    assert out.weakest_subgroup == {
        "subgroup": "sex",
        "level": "male",
        "pauc": levels["male"]["pauc"],
        "n_malignant": 10,
    }
    # below 5 malignant lesions a level is never flagged
    y_few = y.copy()
    y_few[100::10] = 0
    y_few[[100, 110, 120, 130]] = 1
    few = evaluate(y_few, score, meta, n_boot=0)
    male = next(lv for lv in few.subgroups["sex"] if lv["level"] == "male")
    assert male["n_malignant"] == 4 and not male["weakest"]
    assert few.weakest_subgroup is not None and few.weakest_subgroup["level"] == "female"


def test_individual_typology_angle_bands() -> None:
    # (L, b) -> ITA = atan((L - 50) / b) in degrees
    cases = {
        (80.0, 10.0): (71.57, "very light"),  # atan(3)
        (65.0, 15.0): (45.00, "light"),  # atan(1)
        (58.0, 12.0): (33.69, "intermediate"),  # atan(2/3)
        (55.0, 20.0): (14.04, "tan"),  # atan(1/4)
        (45.0, 20.0): (-14.04, "brown"),  # atan(-1/4)
        (30.0, 15.0): (-53.13, "dark"),  # atan(-4/3)
    }
    lightness = np.array([k[0] for k in cases])
    b = np.array([k[1] for k in cases])
    ita = _individual_typology_angle(lightness, b)
    np.testing.assert_allclose(ita, [v[0] for v in cases.values()], atol=0.01)
    assert _skin_tone_bands(ita).tolist() == [v[1] for v in cases.values()]
    # band edges belong to the band below; NaN is unknown
    edges = np.array([55.01, 55.0, 41.0, 28.0, 10.0, -30.0, np.nan])
    assert _skin_tone_bands(edges).tolist() == [
        "very light", "light", "intermediate", "tan", "brown", "dark", "unknown",
    ]  # fmt: skip


def test_skin_tone_and_age_levels_through_evaluate() -> None:
    meta = pl.DataFrame(
        {
            "patient_id": ["a", "a", "b", "b", "c", "c", "d"],
            "tbp_lv_Lext": [80.0, 65.0, 58.0, 55.0, 45.0, 30.0, None],
            "tbp_lv_Bext": [10.0, 15.0, 12.0, 20.0, 20.0, 15.0, 12.0],
            "age_approx": [35.0, 40.0, 59.0, 60.0, 74.0, 75.0, None],
        }
    )
    y = [1, 0, 0, 1, 0, 0, 1]
    out = evaluate(y, [0.9, 0.1, 0.2, 0.8, 0.3, 0.4, 0.7], meta, n_boot=0)
    assert set(out.subgroups) == {"skin_tone", "age_band"}
    tones = [(lv["level"], lv["n"]) for lv in out.subgroups["skin_tone"]]
    assert tones == [
        ("very light", 1), ("light", 1), ("intermediate", 1), ("tan", 1),
        ("brown", 1), ("dark", 1), ("unknown", 1),
    ]  # fmt: skip
    ages = [(lv["level"], lv["n"]) for lv in out.subgroups["age_band"]]
    assert ages == [("<40", 1), ("40-59", 2), ("60-74", 2), (">=75", 1), ("unknown", 1)]


def test_missing_columns_are_skipped(cohort) -> None:
    train, y, score = cohort
    only_ids = evaluate(y, score, train.select("patient_id"), n_boot=0)
    assert only_ids.subgroups == {} and only_ids.weakest_subgroup is None
    partial = evaluate(y, score, train.drop("tbp_lv_Bext", "attribution"), n_boot=0)
    assert set(partial.subgroups) == SUBGROUPS - {"skin_tone", "attribution"}


def test_pandas_metadata_gives_the_same_result(cohort) -> None:
    train, y, score = cohort
    columns = ["patient_id", "sex", "age_approx", "anatom_site_general"]
    from_polars = evaluate(y, score, train.select(columns), n_boot=30, seed=2)
    from_pandas = evaluate(y, score, train.select(columns).to_pandas(), n_boot=30, seed=2)
    assert from_pandas.to_dict() == from_polars.to_dict()


# -------------------------------------------------------------------- calibration
def test_calibration_of_calibrated_and_overconfident_scores() -> None:
    rng = np.random.default_rng(0)
    n = 20_000
    logit = rng.normal(-2.0, 1.5, n)
    p = expit(logit)
    y = (rng.random(n) < p).astype(int)
    meta = pl.DataFrame({"patient_id": np.arange(n) // 10})
    calibrated = evaluate(y, p, meta, n_boot=0).calibration
    assert calibrated is not None and calibrated["converged"]
    assert calibrated["slope"] == pytest.approx(1.0, abs=0.08)
    assert calibrated["intercept"] == pytest.approx(0.0, abs=0.1)
    assert calibrated["calibration_in_the_large"] == pytest.approx(0.0, abs=0.05)
    assert calibrated["brier"] == pytest.approx(np.mean((p - y) ** 2))
    assert calibrated["event_rate"] == pytest.approx(y.mean())
    assert len(calibrated["reliability"]["mean_predicted"]) == 10
    # doubling every logit: the slope halves; the fit is the maximum-likelihood point
    sharp = expit(2 * logit)
    over = evaluate(y, sharp, meta, n_boot=0).calibration
    assert over is not None
    assert over["slope"] == pytest.approx(0.5, abs=0.05)
    x = np.log(sharp) - np.log1p(-sharp)
    residual = y - expit(over["intercept"] + over["slope"] * x)
    assert abs(residual.mean()) < 1e-6 and abs((residual * x).mean()) < 1e-6
    # calibration in the large: shift of the intercept with the slope fixed at 1
    residual_large = y - expit(over["calibration_in_the_large"] + x)
    assert abs(residual_large.mean()) < 1e-6


def test_scores_outside_unit_interval_have_no_calibration() -> None:
    meta = pl.DataFrame({"patient_id": ["a", "a", "b", "b"]})
    out = evaluate([0, 1, 0, 1], [-1.0, 2.0, 0.5, 3.0], meta, n_boot=0)
    assert out.calibration is None
    assert out.pauc == pytest.approx(0.2)
    assert "no calibration" in out.to_html()


# ------------------------------------------------------------------------- output
def _assert_plain(value: object) -> None:
    if isinstance(value, dict):
        assert all(isinstance(k, str) for k in value)
        for item in value.values():
            _assert_plain(item)
    elif isinstance(value, list):
        for item in value:
            _assert_plain(item)
    else:
        assert value is None or type(value) in (str, int, float, bool), type(value)


def test_to_dict_is_plain_json(result: Evaluation) -> None:
    data = result.to_dict()
    _assert_plain(data)
    assert json.loads(json.dumps(data, allow_nan=False)) == data
    assert data["lesions_per_cancer"].keys() == {"0.80", "0.90", "0.95"}
    assert data["pauc_ci"] == list(result.pauc_ci)
    assert set(data["subgroups"]) == SUBGROUPS


def test_to_html_is_a_fragment_of_tables(result: Evaluation) -> None:
    page = result.to_html()
    assert page.startswith('<section class="lesionboost-evaluation">')
    assert page.endswith("</section>")
    assert page.count("<table>") == page.count("</table>") >= 4 + len(SUBGROUPS)
    assert "<script" not in page and "<img" not in page and "<html" not in page
    assert f"{result.pauc:.4f}" in page
    assert "(weakest)" in page


def test_evaluation_module_does_not_import_matplotlib() -> None:
    code = "import sys, lesionboost.evaluation; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_public_names() -> None:
    assert lesionboost.evaluate is evaluate and lesionboost.Evaluation is Evaluation
    assert {"evaluate", "Evaluation"} <= set(lesionboost.__all__)
    assert lesionboost.evaluation.evaluate is evaluate


# ------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("y", "score", "match"),
    [
        ([0, 0, 0, 0], [0.1, 0.2, 0.3, 0.4], r"no malignant \(1\) lesion among 4"),
        ([1, 1, 1, 1], [0.1, 0.2, 0.3, 0.4], r"no benign \(0\) lesion"),
        ([0, 1, 0], [0.1, 0.2, 0.3, 0.4], "y_true has 3 values, y_score 4 and metadata 4 rows"),
        ([0, 1, 0, 1], [0.1, 0.2, 0.3], "y_true has 4 values, y_score 3 and metadata 4 rows"),
        ([0, 1, 0, 1], [0.1, np.nan, 0.3, np.inf], r"2 NaN or infinite value\(s\), at row"),
        ([0, 1, 2, 1], [0.1, 0.2, 0.3, 0.4], r"got \['2'\] at row\(s\) \[2\]"),
        (["0", "1", "0", "1"], [0.1, 0.2, 0.3, 0.4], "map the labels to 0/1"),
    ],
)
def test_clear_errors(y: list, score: list, match: str) -> None:
    meta = pl.DataFrame({"patient_id": ["a", "a", "b", "b"]})
    with pytest.raises(ValueError, match=match):
        evaluate(y, score, meta, n_boot=0)


def test_patient_errors_and_arguments() -> None:
    y, score = [0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4]
    with pytest.raises(SchemaError, match="no 'patient_id' column"):
        evaluate(y, score, pl.DataFrame({"sex": ["a"] * 4}))
    with pytest.raises(SchemaError, match=r"'patient_id' is missing at row\(s\) \[2\]"):
        evaluate(y, score, pl.DataFrame({"patient_id": ["a", "a", None, "b"]}))
    meta = pl.DataFrame({"patient_id": ["a", "a", "b", "b"]})
    with pytest.raises(ValueError, match="n_boot must be an integer >= 0"):
        evaluate(y, score, meta, n_boot=-1)
    with pytest.raises(ValueError, match="min_tpr must lie strictly between 0 and 1"):
        evaluate(y, score, meta, min_tpr=1.0)
