"""``benchmarks/ceiling.py``: the rebuilt mechanism terms are the simulator's, the fit is exact."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import optimize, special

import lesionboost as lb
from _bench import check_tables, import_benchmark, run_small
from lesionboost.simulate import MECHANISMS, SCENARIOS, TERM_NAMES, RiskModel

ceiling = import_benchmark("ceiling.py")
learnability = import_benchmark("learnability.py")


@pytest.mark.parametrize("world", MECHANISMS)
def test_terms_rebuilt_from_the_file_give_the_oracle_up_to_scale(world: str) -> None:
    # a single-mechanism world's tabular logit is intercept + strength * (sum of terms)
    # + the follow-up term: the rebuilt terms must reproduce it exactly
    sim = lb.simulate_slice3d(60, seed=5, scenario=world)
    F, _ = learnability.risk_terms(sim.train, sim.train_oracle["followup_score"].to_numpy())
    k = TERM_NAMES.index("followup")
    rest = sim.train_oracle["tabular_logit"].to_numpy() - RiskModel.from_tables().coef[k] * F[:, k]
    (terms,) = ceiling.components(world, sim.train)
    assert terms.ndim == 2 and terms.shape[0] == sim.train.height
    design = np.column_stack([np.ones(len(rest)), terms.sum(axis=1)])
    coef, *_ = np.linalg.lstsq(design, rest, rcond=None)
    assert coef[1] > 0
    np.testing.assert_allclose(design @ coef, rest, atol=1e-9)


def test_mixed_world_has_one_component_per_mechanism() -> None:
    sim = lb.simulate_slice3d(30, seed=2, scenario="mixed")
    parts = ceiling.components("mixed", sim.train)
    assert len(parts) == len(MECHANISMS)
    assert all(p.shape[0] == sim.train.height for p in parts)


def test_the_mixture_likelihood_gradient_is_exact() -> None:
    rng = np.random.default_rng(1)
    T = [rng.normal(size=(500, 3)), rng.normal(size=(500, 1))]
    f = rng.normal(size=500)
    y = (rng.random(500) < 0.1).astype(float)
    fit = ceiling.MechanismFit()
    X, owner = fit._design(T)
    theta = rng.uniform(0.1, 0.6, 2 + 1 + 4)

    weight = rng.uniform(0.5, 2.0, 500)

    def loss(t: np.ndarray) -> tuple[float, np.ndarray]:
        return fit._loss(t, X, owner, f, y, weight)

    error = optimize.check_grad(lambda t: loss(t)[0], lambda t: loss(t)[1], theta)
    assert error < 1e-5 * np.linalg.norm(loss(theta)[1])


def test_a_mixture_of_two_hazards_is_recovered() -> None:
    rng = np.random.default_rng(0)
    n = 200_000
    T = [rng.normal(size=(n, 1)), rng.normal(size=(n, 2))]
    f = rng.normal(size=n)
    hazards = np.column_stack([-4.0 + 1.2 * T[0][:, 0], -5.0 + T[1] @ [0.8, 0.4]])
    z = -0.5 + 0.7 * f + special.logsumexp(hazards, axis=1)
    y = (rng.random(n) < special.expit(z)).astype(float)
    fit = ceiling.MechanismFit().fit(T, f, y)
    assert fit.coef_[0][0] == pytest.approx(1.2, abs=0.15)
    np.testing.assert_allclose(fit.coef_[1], [0.8, 0.4], atol=0.15)
    assert fit.theta_[1] == pytest.approx(0.7, abs=0.1)  # the follow-up coefficient
    # the fitted log-odds rank like the true ones
    assert np.corrcoef(fit.decision_function(T, f), z)[0, 1] > 0.99


def test_ceiling_benchmark_small_mode(tmp_path: Path) -> None:
    report, _ = run_small("ceiling.py", tmp_path / "ceiling.json", timeout=300)
    assert report["worlds"] == list(SCENARIOS)
    assert len(report["cells"]) == len(SCENARIOS)
    for cell in report["cells"]:
        raw, oracle = cell["raw_lightgbm_oof_pauc"], cell["tabular_oracle_pauc"]
        for name in ceiling.FOLLOWUPS:
            pauc = cell["well_specified_oof_pauc"][name]
            assert 0.0 < pauc <= 0.2
            assert cell["gap_closed"][name] == pytest.approx((pauc - raw) / (oracle - raw))
    summary = report["summary"]
    for name in ceiling.FOLLOWUPS:
        gaps = {w: summary["per_world"][w][name]["gap"] for w in report["worlds"]}
        assert summary["overall"][name]["worst"] == min(gaps.values())
        assert summary["overall"][name]["mean"] == pytest.approx(np.mean(list(gaps.values())))
    tables = check_tables(report, "ceiling")
    assert [row[0] for row in tables["ceiling/gap"].rows] == list(ceiling.FOLLOWUPS.values())


def test_robustness_rows_join_only_a_result_of_the_same_cells_and_only_models(
    tmp_path: Path,
) -> None:
    worlds = ["default", "absolute"]
    summary = {
        w: {
            "raw": {"gap_mean": 0.0},
            "default": {"gap_mean": 0.25},
            "tabular_oracle": {"gap_mean": 1.0},
        }
        for w in worlds
    }
    result = {
        "n_patients": 600,
        "seeds": [0, 1, 2],
        "n_splits": 5,
        "row_labels": {
            "raw": "LightGBM (raw columns)",
            "default": "defaults",
            "tabular_oracle": "tabular oracle",
        },
        "summary": summary,
    }
    path = tmp_path / "robustness.json"
    path.write_text(json.dumps(result))
    settings = {"patients": 600, "seeds": 3, "folds": 5}
    assert ceiling.robustness_rows(path, settings, worlds) == {
        "defaults": {"default": 0.25, "absolute": 0.25}
    }
    assert ceiling.robustness_rows(path, {**settings, "patients": 300}, worlds) == {}
    assert ceiling.robustness_rows(tmp_path / "missing.json", settings, worlds) == {}
