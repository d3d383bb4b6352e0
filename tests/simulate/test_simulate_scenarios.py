"""Simulator scenarios: the default is unchanged, every other world runs, is calibrated
and differs structurally from the default, and the CLI exposes them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from scipy import special, stats

from lesionboost import pauc_above_tpr
from lesionboost.cli import main
from lesionboost.cli._parsers import SIMULATION_SCENARIOS
from lesionboost.schema import TEST_COLUMNS, TRAIN_COLUMNS
from lesionboost.simulate import SCENARIOS, SimulatedSLICE3D, mixture_weights, simulate_slice3d
from lesionboost.simulate._scenarios import _mahalanobis, _percentile_rank
from lesionboost.simulate._simulator import render_images

OTHERS = tuple(name for name in SCENARIOS if name != "default")

# sha256 of the CSV text of simulate_slice3d(40, n_test_patients=3, images=7, seed=3), frame by
# frame, floats rounded to 6 significant digits, as the default simulator produces it; the
# default scenario must keep it. The rounding keeps the check to the simulator's own output:
# numpy's vectorised exp/log may differ in the last bit between CPUs (AVX2 or AVX-512), and a
# last-bit difference moves a 6-digit rounding of these ~600k values with odds of about 1e-4.
_DEFAULT_HASHES = {
    "train": "c53807cd8bb81f22b880c8452fd18c85ec40f02cd3084cf077b1bc855423512b",
    "train_oracle": "4caf23f9c6eae3bca0bcbee720c5feba72d13d1b6d4ef8982209a094435c2967",
    "test": "24cab2199651d9adf1bc268afaf43a076b78ca084f359ae9c252ecafcfe1c456",
    "test_oracle": "0b8b4385af59a8aa929d90e193eb491c847b48caf486cfee47d4b61f15c34108",
}
_DEFAULT_IMAGE_IDS = (
    "ISIC_0460576", "ISIC_1030934", "ISIC_5138906", "ISIC_5302846", "ISIC_7410776",
    "ISIC_7903692", "ISIC_8486996",
)  # fmt: skip


def _sha(frame: pl.DataFrame | None) -> str:
    assert frame is not None
    rounded = frame.with_columns(pl.col(pl.Float64, pl.Float32).round_sig_figs(6))
    return hashlib.sha256(rounded.write_csv().encode()).hexdigest()


@pytest.fixture(scope="module")
def cohorts() -> dict[str, SimulatedSLICE3D]:
    # ~77k lesions (~75 malignant) per scenario, the same population in each.
    return {name: simulate_slice3d(200, seed=5, scenario=name) for name in SCENARIOS}


# ------------------------------------------------------------------ the default world
def test_default_scenario_is_bit_identical() -> None:
    omitted = simulate_slice3d(40, n_test_patients=3, images=7, seed=3)
    explicit = simulate_slice3d(40, n_test_patients=3, images=7, seed=3, scenario="default")
    for sim in (omitted, explicit):
        assert sim.scenario == "default"
        for name, expected in _DEFAULT_HASHES.items():
            assert _sha(getattr(sim, name)) == expected, name
        assert sim.image_ids == _DEFAULT_IMAGE_IDS
    for name in ("train", "train_oracle", "test", "test_oracle"):
        assert_frame_equal(getattr(omitted, name), getattr(explicit, name))


def test_scenario_names() -> None:
    assert SCENARIOS[0] == "default" and "mixed" in SCENARIOS and len(SCENARIOS) >= 7
    assert len(set(SCENARIOS)) == len(SCENARIOS)
    assert SIMULATION_SCENARIOS == SCENARIOS  # the CLI's copy of the names
    with pytest.raises(ValueError, match="choose one of: default, location_duckling"):
        simulate_slice3d(5, scenario="nonsense")


# ------------------------------------------------------------------ every world
@pytest.mark.parametrize("scenario", OTHERS)
def test_scenario_runs_with_the_schema_and_a_finite_oracle(scenario: str) -> None:
    sim = simulate_slice3d(60, n_test_patients=3, images=4, seed=2, scenario=scenario)
    default = simulate_slice3d(60, n_test_patients=3, images=4, seed=2)
    assert sim.scenario == scenario
    assert dict(sim.train.schema) == TRAIN_COLUMNS
    assert sim.test is not None and dict(sim.test.schema) == TEST_COLUMNS
    assert sim.train_oracle.columns == default.train_oracle.columns
    for oracle in (sim.train_oracle, sim.test_oracle):
        assert oracle is not None
        assert np.isfinite(oracle.select("logit", "tabular_logit").to_numpy()).all()
    # Same population: every column drawn before the label is the default's.
    label_free = [c for c in TRAIN_COLUMNS if c in TEST_COLUMNS]
    assert_frame_equal(sim.train.select(label_free), default.train.select(label_free))
    assert sim.image_ids == default.image_ids
    assert_frame_equal(
        sim.train_oracle.select("isic_id", "followup_score"),
        default.train_oracle.select("isic_id", "followup_score"),
    )
    # Train-only columns follow the scenario's labels.
    train = sim.train
    malignant = train.filter(pl.col("target") == 1)
    assert malignant.get_column("lesion_id").null_count() == 0
    assert malignant.get_column("iddx_1").eq("Malignant").all()
    benign = train.filter(pl.col("target") == 0)
    assert benign.get_column("mel_thick_mm").null_count() == benign.height
    # The image-only component is the default's: crops render from the oracle gap.
    gap = (sim.train_oracle["logit"] - sim.train_oracle["tabular_logit"]).to_numpy()
    default_gap = (default.train_oracle["logit"] - default.train_oracle["tabular_logit"]).to_numpy()
    np.testing.assert_allclose(gap, default_gap, atol=1e-9)
    crops = list(sim.iter_images("train"))
    assert [isic for isic, _ in crops] == list(sim.image_ids)
    assert all(blob[:2] == b"\xff\xd8" for _, blob in crops)
    assert next(render_images(sim.test.head(1), sim.test_oracle.head(1), 1))[1][:2] == b"\xff\xd8"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_expected_prevalence_is_plausible(
    cohorts: dict[str, SimulatedSLICE3D], scenario: str
) -> None:
    expected = special.expit(cohorts[scenario].train_oracle["logit"].to_numpy()).mean()
    assert 0.0005 < expected < 0.002, expected


@pytest.mark.parametrize("scenario", OTHERS)
def test_scenarios_differ_structurally_from_the_default(
    cohorts: dict[str, SimulatedSLICE3D], scenario: str
) -> None:
    default = cohorts["default"].train_oracle
    other = cohorts[scenario].train_oracle
    assert other["isic_id"].equals(default["isic_id"])
    rho = stats.spearmanr(default["tabular_logit"], other["tabular_logit"]).statistic
    assert rho < 0.9, rho


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_the_oracle_ranks_well(cohorts: dict[str, SimulatedSLICE3D], scenario: str) -> None:
    sim = cohorts[scenario]
    y = sim.train["target"].to_numpy()
    assert 20 < y.sum() < 300
    assert pauc_above_tpr(y, sim.train_oracle["tabular_logit"].to_numpy()) > 0.1
    # A constant score gets the floor: 0.2 * 0.2 / 2.
    assert pauc_above_tpr(y, np.zeros(len(y))) == pytest.approx(0.02)


def test_mixed_draws_its_weights_from_the_seed() -> None:
    first, second = mixture_weights(0), mixture_weights(1)
    assert set(first) == set(OTHERS) - {"mixed"}
    assert sum(first.values()) == pytest.approx(1.0) and min(first.values()) >= 0
    assert mixture_weights(0) == first
    assert max(abs(first[k] - second[k]) for k in first) > 0.05
    # Different weights, different worlds on the same population.
    a = simulate_slice3d(30, seed=0, scenario="mixed").train_oracle
    b = simulate_slice3d(30, seed=0, scenario=max(first, key=first.__getitem__)).train_oracle
    assert not np.allclose(a["tabular_logit"].to_numpy(), b["tabular_logit"].to_numpy())


# ------------------------------------------------------------------ building blocks
def test_percentile_rank_is_the_featurizers_rank() -> None:
    rng = np.random.default_rng(0)
    group = rng.integers(0, 40, 2_000)
    values = np.round(rng.normal(size=2_000), 1)  # ties
    frame = pl.DataFrame({"g": group, "x": values})
    n = pl.len().over("g")
    expected = frame.select(
        pl.when(n > 1).then((pl.col("x").rank("average").over("g") - 1) / (n - 1)).otherwise(0.5)
    ).to_series()
    np.testing.assert_allclose(_percentile_rank(values, group), expected.to_numpy())


def test_mahalanobis_matches_a_direct_computation() -> None:
    rng = np.random.default_rng(1)
    group = np.repeat(np.arange(5), [1, 2, 7, 30, 60])
    x = rng.normal(size=(len(group), 3)) @ np.array([[1, 0.5, 0], [0, 1, 0.3], [0, 0, 2]])
    distance = _mahalanobis(x, group)
    assert distance[0] == 0.0
    for g in range(5):
        rows = x[group == g]
        centred = rows - rows.mean(axis=0)
        cov = centred.T @ centred / len(rows)
        shrink = len(rows) / (len(rows) + 10.0)
        target = shrink * cov + (1 - shrink) * np.diag(np.diag(cov)) + 0.01 * np.eye(3)
        direct = np.sqrt(np.einsum("ia,ab,ib->i", centred, np.linalg.inv(target), centred))
        np.testing.assert_allclose(distance[group == g], direct, rtol=1e-8, atol=1e-12)


# ------------------------------------------------------------------ CLI
def test_cli_scenario(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sim"
    code = main(["simulate", "--out", str(out), "--patients", "8", "--seed", "4",
                 "--scenario", "percentile", "--json", "-q"])  # fmt: skip
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["scenario"] == "percentile"
    oracle = pl.read_csv(out / "oracle.csv")
    expected = simulate_slice3d(8, seed=4, scenario="percentile").train_oracle
    np.testing.assert_allclose(oracle["tabular_logit"].to_numpy(), expected["tabular_logit"])
    assert main(["simulate", "--out", str(tmp_path / "other"), "--scenario", "nonsense"]) == 2
    assert "invalid choice" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()
