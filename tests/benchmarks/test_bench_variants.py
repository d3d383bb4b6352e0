"""``benchmarks/variants.py``: the variants run, select features in-fold and never leak folds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from _bench import check_tables, import_benchmark, run_small
from lesionboost.ensemble import GBDTEnsembleClassifier

variants = import_benchmark("variants.py")


def test_variants_benchmark_small_mode_smoke(tmp_path: Path) -> None:
    report, stdout = run_small("variants.py", tmp_path / "variants.json", timeout=600)
    results = {r["variant"]: r for r in report["results"]}
    assert list(results) == [
        "lgbm:base", "lgbm:pos_weight_1", "top:20", "members", "linear", "followup",
        "followup_feature",
    ]  # fmt: skip
    assert report["settings"]["positives"] > 0
    assert report["datasets"][0]["results"] == report["results"]
    assert all(r["seconds"] > 0 for r in results.values())
    # a random ranking scores ~0.02 above 80 % TPR: the member and the ensemble learn
    assert results["lgbm:base"]["pauc"] > 0.06 and results["members"]["pauc"] > 0.06
    assert results["lgbm:base"]["pauc"] != results["lgbm:pos_weight_1"]["pauc"]
    members = results["members"]
    assert set(members["blends"]) == {":".join(map(str, w)) for w in variants.BLEND_WEIGHTS}
    assert members["pauc"] == members["blends"]["1:1:1"]
    assert {"lightgbm", "xgboost", "catboost"} <= set(members)
    assert set(results["linear"]["blends"]) == {"20%", "30%"}
    followup = results["followup"]
    # Follow-up is predictable from the columns (real sample: CV AUC ~0.9).
    assert followup["followup_auc_benign"] > 0.75
    assert followup["base"] == results["lgbm:base"]["pauc"]
    assert set(followup["blends"]) == {"10%", "20%", "30%"}
    assert "OOF pAUC" in stdout

    # one column per data set (the first with its wall time), one row per variant run
    labels = [variants.dataset_label(d["settings"]["source"], d["settings"]["seed"])
              for d in report["datasets"]]  # fmt: skip
    assert labels[0] == "simulator seed 0"
    tables = check_tables(report, "variants")
    for table in tables.values():
        assert table.columns[1:] == [labels[0], "wall s", *labels[1:]]
    lightgbm = {row[0]: row for row in tables["variants/lightgbm"].rows}
    base = lightgbm["as shipped (`lgbm:base`)"]
    assert base[1] == f"{results['lgbm:base']['pauc']:.4f}"
    assert base[2] == f"{results['lgbm:base']['seconds']:.0f}"
    assert "`lgbm:extra_trees`" not in " ".join(lightgbm)  # not run: no row
    if "real sample" in labels:  # the shared real sample is present
        real = {r["variant"]: r for r in report["datasets"][labels.index("real sample")]["results"]}
        assert base[2 + labels.index("real sample")] == f"{real['lgbm:base']['pauc']:.4f}"
        assert lightgbm["`scale_pos_weight` 1 (`lgbm:pos_weight_1`)"][3] == "--"  # not run there
    blend = {row[0]: row for row in tables["variants/members"].rows}
    assert blend["rank blend of the three, weights 1:1:1 (equal, as shipped)"][1] == (
        f"{members['pauc']:.4f}"
    )


def test_out_of_fold_never_trains_on_the_scored_fold() -> None:
    features = pl.DataFrame({"row": np.arange(30, dtype=np.float64)})
    folds = np.repeat([0, 1, 2], 10)
    y = np.zeros(30)

    def fit_predict(train: pl.DataFrame, y_train: np.ndarray, test: pl.DataFrame) -> np.ndarray:
        seen, scored = set(train["row"].to_list()), set(test["row"].to_list())
        assert not seen & scored and len(seen) + len(scored) == 30
        return test["row"].to_numpy() * 2

    np.testing.assert_array_equal(
        variants.out_of_fold(features, y, folds, fit_predict), np.arange(30) * 2
    )


def test_top_features_ranks_the_informative_column_first() -> None:
    rng = np.random.default_rng(0)
    n = 3000
    signal = rng.normal(size=n)
    y = (signal + 0.5 * rng.normal(size=n) > 1.5).astype(int)
    X = pl.DataFrame(
        {"noise_a": rng.normal(size=n), "signal": signal, "noise_b": rng.normal(size=n)}
    )
    model = GBDTEnsembleClassifier(
        members=("lightgbm",),
        n_bags=2,
        neg_ratio=None,
        lightgbm_params={"n_estimators": 30, "min_data_in_leaf": 20},
        categorical_features=None,
    ).fit(X, y)
    assert variants.top_features(model, X.columns, 1) == ["signal"]
    assert sorted(variants.top_features(model, X.columns, 3)) == sorted(X.columns)


def test_unknown_or_out_of_order_variants_are_refused() -> None:
    features = pl.DataFrame({"a": [0.0, 1.0]})
    with pytest.raises(ValueError, match="unknown variant"):
        variants.run_variant("boosted_forest", features, np.array([0, 1]), np.array([0, 1]), {})
    with pytest.raises(ValueError, match="needs the lesion_id presence"):
        variants.run_variant("followup", features, np.array([0, 1]), np.array([0, 1]), {})
    with pytest.raises(ValueError, match="needs the lesion_id presence and patient"):
        variants.run_variant(
            "followup_feature", features, np.array([0, 1]), np.array([0, 1]), {}, np.ones(2)
        )
    with pytest.raises(ValueError, match="list 'members' before it"):
        variants.run_variant("linear", features, np.array([0, 1]), np.array([0, 1]), {})


def test_followup_model_learns_from_benign_rows_only() -> None:
    # Malignant rows are all followed up and carry a feature of their own; a model
    # that trained on them would rank by it. Among benign rows only "b" matters.
    rng = np.random.default_rng(1)
    n = 4000
    y = (rng.random(n) < 0.05).astype(int)
    b = rng.normal(size=n)
    tracked = np.where(y == 1, 1, (b + 0.3 * rng.normal(size=n) > 1.2).astype(int))
    a = np.where(y == 1, 5.0, 0.0) + 0.1 * rng.normal(size=n)
    train = pl.DataFrame({"a": a, "b": b})
    test = pl.DataFrame({"a": [5.0, 0.0, 0.0], "b": [-2.0, -2.0, 2.0]})
    scores = variants.followup_model()(train, np.column_stack([y, tracked]), test)
    assert scores[2] > scores[0] and scores[2] > scores[1]
    assert abs(scores[0] - scores[1]) < 0.5


def test_weighted_member_with_unit_weights_is_the_member() -> None:
    rng = np.random.default_rng(2)
    n = 3000
    signal = rng.normal(size=n)
    y = (signal + rng.normal(size=n) > 2.0).astype(int)
    followed = (rng.random(n) < 0.1).astype(int)
    train = pl.DataFrame({"signal": signal, "noise": rng.normal(size=n)})
    labels = np.column_stack([y, followed])
    plain = variants.lightgbm_member()(train, y, train)
    np.testing.assert_array_equal(variants.weighted_member(1.0)(train, labels, train), plain)
    assert not np.array_equal(variants.weighted_member(5.0)(train, labels, train), plain)


def test_followup_feature_scores_training_lesions_with_models_that_never_saw_their_patient(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = []

    def recording_aux():  # stands in for followup_model(): records what each fit saw
        def fit_predict(train: pl.DataFrame, labels: np.ndarray, test: pl.DataFrame) -> np.ndarray:
            calls.append((set(train["patient"]), set(test["patient"]), labels.shape[1]))
            return test["patient"].to_numpy()

        return fit_predict

    member_inputs = {}

    def recording_member(train: pl.DataFrame, y: np.ndarray, test: pl.DataFrame) -> np.ndarray:
        member_inputs["train"], member_inputs["test"] = train, test
        return np.zeros(test.height)

    monkeypatch.setattr(variants, "followup_model", recording_aux)
    monkeypatch.setattr(variants, "_member_scores", recording_member)
    patients = np.repeat(np.arange(8), 5)
    train = pl.DataFrame({"patient": patients.astype(float)})
    labels = np.column_stack([np.zeros(40), np.zeros(40), patients])
    test = pl.DataFrame({"patient": [100.0, 101.0]})
    variants.followup_feature_member(inner_splits=4)(train, labels, test)
    *inner, final = calls
    assert len(inner) == 4
    assert all(not seen & scored and width == 2 for seen, scored, width in inner)
    assert set().union(*(scored for _, scored, _ in inner)) == set(range(8))
    assert final[0] == set(range(8))  # held-out lesions: the aux model of the whole fold
    np.testing.assert_array_equal(member_inputs["train"]["followup_score"], patients)
    assert member_inputs["test"]["followup_score"].to_list() == [100.0, 101.0]


def _fake_result(name: str, pauc: float) -> dict:
    result = {"variant": name, "pauc": pauc, "seconds": 10.0}
    if name == "members":
        result.update({kind: pauc for kind in ("lightgbm", "xgboost", "catboost")})
        result.update({f"{kind}_seconds": 5.0 for kind in ("lightgbm", "xgboost", "catboost")})
        result["blends"] = {":".join(map(str, w)): pauc for w in variants.BLEND_WEIGHTS}
    elif name in ("linear", "spline"):
        result["blends"] = {f"{s:.0%}": pauc for s in variants.LINEAR_BLEND_SHARES}
    elif name == "followup":
        result.update({"followup_auc_benign": 0.9, "malignancy_auc": 0.8, "base": pauc})
        result["blends"] = {f"{s:.0%}": pauc for s in variants.FOLLOWUP_BLEND_SHARES}
    return result


def test_tables_of_the_full_plan_have_a_column_per_data_set_and_a_row_per_variant() -> None:
    datasets = [
        {
            "settings": {"source": source, "seed": seed, "rows": 1000, "positives": 10,
                         "folds": 5},
            "results": [_fake_result(name, 0.15 + k / 1000) for name in names],
        }
        for k, (source, seed, names) in enumerate(variants.PLAN)
    ]  # fmt: skip
    tables = {t.id: t for t in variants.tables(datasets, small=False)}
    assert set(tables) == {"variants/lightgbm", "variants/members", "variants/followup"}
    header = ["simulator seed 0", "wall s", "simulator seed 1", "simulator seed 2", "real sample"]
    assert all(t.columns[1:] == header for t in tables.values())
    lightgbm = {row[0]: row[1:] for row in tables["variants/lightgbm"].rows}
    n_lgbm = sum(v.startswith(("lgbm:", "top:")) for v in variants.EVERY)
    assert len(lightgbm) == n_lgbm
    assert lightgbm["extra trees (`lgbm:extra_trees`)"] == ["0.1500", "10", "0.1510", "0.1520",
                                                           "0.1530"]  # fmt: skip
    assert lightgbm["linear trees (`lgbm:linear_tree`)"][2:] == ["--", "--", "--"]
    followup = {row[0]: row[1:] for row in tables["variants/followup"].rows}
    weighted = "followed-up benign lesions weighted 3 in the member (`followup_weight:3`)"
    assert followup[weighted] == ["0.1500", "10", "0.1510", "0.1520", "0.1530"]
    assert followup["its AUC for malignancy"] == ["0.800", "--", "0.800", "0.800", "0.800"]
    members = {row[0]: row[1:] for row in tables["variants/members"].rows}
    assert members["XGBoost member alone (default bags)"] == ["0.1500", "5", "--", "--", "0.1530"]
