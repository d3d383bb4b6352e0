"""``benchmarks/robustness.py --small`` and its peer model, ``benchmarks/lineage.py``."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import polars as pl
import pytest
from scipy.stats import binomtest

import _bench
import lesionboost as lb
from _bench import check_tables, import_benchmark, run_small
from lesionboost.schema import LEAK_COLUMNS

SCENARIOS: tuple[str, ...] = tuple(getattr(lb.simulate, "SCENARIOS", None) or ("default",))
#: Two worlds keep the run short: the first and the last scenario.
WORLDS = list(dict.fromkeys([SCENARIOS[0], SCENARIOS[-1]]))
ROWS = ["raw", "lineage_lgbm", "lineage_vote", "default", "tuned"]
TABLES = {
    "robustness/headline",
    "robustness/pauc",
    "robustness/vs_lineage",
    "robustness/gap",
    "robustness/summary",
}

robustness = import_benchmark("robustness.py")
lineage = import_benchmark("lineage.py")


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    out = tmp_path_factory.mktemp("robustness") / "robustness.json"
    return run_small(
        "robustness.py",
        out,
        "--scenarios",
        ",".join(WORLDS),
        "--rows",
        ",".join(ROWS),
        "--tune-trials",
        "1",
        "--n-jobs",
        "1",
        timeout=300,
    )


# --------------------------------------------------------------------------- the --small run
def test_small_run_has_every_row_and_world(small: tuple[dict[str, Any], str]) -> None:
    report, stdout = small
    assert report["small"] is True
    assert report["rows"] == ROWS and report["worlds"] == WORLDS
    assert report["scenarios_available"] == hasattr(lb.simulate, "SCENARIOS")
    for world in WORLDS:
        runs = report["simulator"][world]
        assert [run["seed"] for run in runs] == report["seeds"] == [0]
        args = SimpleNamespace(**report["settings"])
        for run in runs:
            assert set(run["models"]) == set(ROWS)
            for row, cell in run["models"].items():
                assert 0.0 <= cell["pauc"] <= 0.2 and cell["wall_seconds"] > 0
                assert cell["fit_seconds"] > 0
                # keyed as a later run finds it again (--reuse)
                data = f"p{report['n_patients']}-k{report['n_splits']}/{world}/{run['seed']}"
                assert cell["cell_key"] == [data, robustness.cell_key(row, args)]
            assert "tune_seconds" in run["models"]["tuned"]
        assert set(report["summary"][world]) == {*ROWS, "tabular_oracle"}
    if report["real_sample"] is not None:  # the real sample is optional (not shipped)
        assert len(report["real_sample"]) == 1
        assert set(report["real_sample"][0]["models"]) == set(ROWS)
        assert set(report["summary_real"]) == set(ROWS)
    assert set(report["overall"]) == set(ROWS)
    for table_id in TABLES:
        assert table_id in stdout


def test_small_run_tables(
    small: tuple[dict[str, Any], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    report, _ = small
    n_worlds = len(WORLDS)
    # the column counts depend on the worlds run (one column each), so they are given here
    counts = {
        "robustness/pauc": n_worlds + 2,
        "robustness/vs_lineage": n_worlds + 2,
        "robustness/gap": n_worlds + 1,
        "robustness/summary": 5,
    }
    for table_id, count in counts.items():
        monkeypatch.setitem(_bench.COLUMNS, table_id, count)
    tables = check_tables(report, "robustness")  # ids match the docs, cells filled, renders
    assert set(tables) == TABLES
    labels = report["row_labels"]
    expected = {
        "robustness/pauc": ["model", *WORLDS, "real sample"],
        "robustness/vs_lineage": ["model", *WORLDS, "real sample"],
        "robustness/gap": ["model", *WORLDS],
    }
    for table_id, columns in expected.items():
        assert tables[table_id].columns == columns
    assert len(tables["robustness/summary"].columns) == 5
    models = [labels[row] for row in ROWS]
    assert [r[0] for r in tables["robustness/pauc"].rows] == [*models, labels["tabular_oracle"]]
    assert [r[0] for r in tables["robustness/gap"].rows] == [*models, labels["tabular_oracle"]]
    assert [r[0] for r in tables["robustness/vs_lineage"].rows] == models
    assert [r[0] for r in tables["robustness/summary"].rows] == models
    for table in tables.values():
        assert all(len(row) == len(table.columns) for row in table.rows)
    assert tables["robustness/gap"].rows[-1][1 : 1 + n_worlds] == ["100 %"] * n_worlds
    assert "optimistic" in tables["robustness/pauc"].note


def test_a_run_recorded_under_another_name_keeps_its_tables_apart(
    small: tuple[dict[str, Any], str],
) -> None:
    report, _ = small
    assert report["record_as"] == "robustness"
    renamed = robustness.make_tables({**report, "record_as": "robustness_full"})
    assert {table.id for table in renamed} == {
        table_id.replace("robustness/", "robustness_full/") for table_id in TABLES
    }
    original = {table.id: table for table in robustness.make_tables(report)}
    for table in renamed:
        assert table.rows == original[table.id.replace("_full/", "/")].rows
    with pytest.raises(SystemExit):  # refused before any cell runs
        robustness.main(["--record-as", "not a name", "--small"])


def test_headline_counts_the_worlds_the_defaults_lead_and_says_what_is_not_met(
    small: tuple[dict[str, Any], str],
) -> None:
    report, _ = small
    rows = robustness.headline(report).rows
    diffs = {w: report["summary"][w]["default"]["diff_vs_lineage_mean"] for w in WORLDS}
    ahead = sum(d > 0 for d in diffs.values())
    assert rows[0][2].startswith(f"{ahead}/{len(WORLDS)}")
    for world, diff in diffs.items():
        assert (world in rows[0][2].split(";")[0]) == (diff <= 0)  # behind worlds are named
    real = report["summary_real"]
    met = ahead == len(WORLDS) and real is not None and real["default"]["diff_vs_lineage_mean"] > 0
    assert rows[0][2].endswith("(not met)") != met
    # all worlds led and the real sample too: the target reads as met
    for world in WORLDS:
        report["summary"][world]["default"]["diff_vs_lineage_mean"] = 0.001
    if real is not None:
        real["default"]["diff_vs_lineage_mean"] = 0.001
        assert not robustness.headline(report).rows[0][2].endswith("(not met)")


def test_gap_closed_is_recomputed_from_the_per_seed_figures(
    small: tuple[dict[str, Any], str],
) -> None:
    report, _ = small
    for world in WORLDS:
        runs, summary = report["simulator"][world], report["summary"][world]
        for row in [*ROWS, "tabular_oracle"]:
            expected = []
            for run in runs:
                raw, oracle = run["models"]["raw"]["pauc"], run["oracle"]
                value = oracle if row == "tabular_oracle" else run["models"][row]["pauc"]
                expected.append((value - raw) / (oracle - raw))
            assert summary[row]["gap_per_seed"] == pytest.approx(expected)
            assert summary[row]["gap_mean"] == pytest.approx(np.mean(expected))
        # by construction: the oracle closes all of the gap, the raw row none of it
        assert summary["tabular_oracle"]["gap_per_seed"] == pytest.approx([1.0] * len(runs))
        assert summary["raw"]["gap_per_seed"] == pytest.approx([0.0] * len(runs))
    gap = robustness.gap_closed
    assert gap(0.18, 0.12, 0.18) == 1.0 and gap(0.12, 0.12, 0.18) == 0.0
    assert gap(0.15, 0.12, 0.18) == pytest.approx(0.5) and gap(0.15, 0.12, 0.12) is None


def test_sign_tests_match_the_reported_differences(small: tuple[dict[str, Any], str]) -> None:
    report, _ = small
    columns = [(report["simulator"][w], report["summary"][w]) for w in WORLDS]
    if report["real_sample"] is not None:
        columns.append((report["real_sample"], report["summary_real"]))
    for runs, summary in columns:
        for row in ROWS:
            entry = summary[row]
            diffs = [
                run["models"][row]["pauc"] - run["models"]["lineage_lgbm"]["pauc"] for run in runs
            ]
            assert entry["diff_vs_lineage_per_seed"] == pytest.approx(diffs)
            sign = entry["sign_test"]
            assert sign["positive"] == sum(d > 0 for d in diffs)
            assert sign["nonzero"] == sum(d != 0 for d in diffs)
            assert 0.0 <= sign["p"] <= 1.0
            if sign["nonzero"]:
                assert sign["p"] == pytest.approx(
                    binomtest(sign["positive"], sign["nonzero"], 0.5).pvalue
                )
            else:
                assert sign["p"] == 1.0
        assert summary["lineage_lgbm"]["diff_vs_lineage_per_seed"] == [0.0] * len(runs)


def test_sign_test_helper() -> None:
    assert robustness.sign_test([0.01, 0.02, 0.03])["p"] == pytest.approx(0.25)
    assert robustness.sign_test([-0.01, -0.02, -0.03])["p"] == pytest.approx(0.25)
    assert robustness.sign_test([0.01, -0.02, 0.0]) == {"positive": 1, "nonzero": 2, "p": 1.0}
    assert robustness.sign_test([0.0, 0.0])["p"] == 1.0
    assert robustness.sign_test([0.01] * 5)["p"] == pytest.approx(0.0625)


# --------------------------------------------------------------------------- the lineage peer
@pytest.fixture(scope="module")
def cohort() -> pl.DataFrame:
    return lb.simulate_slice3d(30, seed=3).train


@pytest.fixture(scope="module")
def fitted(cohort: pl.DataFrame) -> Any:
    return lineage.LineageClassifier(n_bags=1, n_estimators=5, n_jobs=1).fit(cohort)


def _rows(features: pl.DataFrame, frame: pl.DataFrame, ids: list[str]) -> pl.DataFrame:
    keyed = features.with_columns(frame.get_column("isic_id").alias("__id"))
    return keyed.filter(pl.col("__id").is_in(ids)).sort("__id").drop("__id")


def test_lineage_feature_set(fitted: Any) -> None:
    names = fitted.feature_names_
    assert len(lineage.LESION_FEATURES) == 42 and len(lineage.RAW_NUMERIC) == 34
    numeric = [*lineage.RAW_NUMERIC, *lineage.LESION_FEATURES]
    assert names[: len(numeric)] == numeric
    assert names[len(numeric) : 2 * len(numeric)] == [f"{c}_norm" for c in numeric]
    assert "count_per_patient" in names
    assert any(n.startswith("attribution=") for n in names)
    no_counts = lineage.LineageClassifier(counts=False)
    assert "counts" in no_counts.get_params()


def test_lineage_features_are_patient_relative(cohort: pl.DataFrame, fitted: Any) -> None:
    patients = cohort.get_column("patient_id").unique(maintain_order=True).to_list()
    a, b = patients[0], patients[1]
    a_ids = cohort.filter(pl.col("patient_id") == a).get_column("isic_id").to_list()
    base = fitted.transform_features(cohort)

    # changing another patient's lesions leaves patient a's features as they are
    other = cohort.with_columns(
        [
            pl.when(pl.col("patient_id") == b)
            .then(pl.col(c) * 3.0 + 1.0)
            .otherwise(pl.col(c))
            .alias(c)
            for c in ("tbp_lv_areaMM2", "tbp_lv_H", "clin_size_long_diam_mm", "tbp_lv_deltaB")
        ]
    )
    changed = fitted.transform_features(other)
    assert _rows(changed, other, a_ids).equals(_rows(base, cohort, a_ids))
    b_ids = cohort.filter(pl.col("patient_id") == b).get_column("isic_id").to_list()
    assert not _rows(changed, other, b_ids).equals(_rows(base, cohort, b_ids))

    # adding a lesion to patient a changes its patient statistics (and count)
    extra = (
        cohort.filter(pl.col("patient_id") == a)
        .head(1)
        .with_columns(
            pl.lit("ISIC_NEW").alias("isic_id"),
            (pl.col("tbp_lv_areaMM2") * 10.0).alias("tbp_lv_areaMM2"),
        )
    )
    grown = pl.concat([cohort, extra])
    after = _rows(fitted.transform_features(grown), grown, a_ids)
    before = _rows(base, cohort, a_ids)
    assert (after["count_per_patient"] - before["count_per_patient"]).to_list() == [1.0] * len(
        a_ids
    )
    assert not after["tbp_lv_areaMM2_norm"].equals(before["tbp_lv_areaMM2_norm"])
    # a lesion's own (non-relative) features do not move
    assert after.select(lineage.LESION_FEATURES).equals(before.select(lineage.LESION_FEATURES))


def test_lineage_never_reads_leak_columns(cohort: pl.DataFrame, fitted: Any) -> None:
    assert not any(
        name == leak or name.startswith((f"{leak}_", f"{leak}="))
        for name in fitted.feature_names_
        for leak in LEAK_COLUMNS
    )
    n = cohort.height
    scrambled = cohort.with_columns(
        pl.Series("target", np.arange(n) % 2, dtype=cohort.schema["target"]),
        pl.lit("L").alias("lesion_id"),
        pl.lit("Malignant").alias("iddx_1"),
        pl.lit(9.9).alias("mel_thick_mm"),
        pl.Series("tbp_lv_dnn_lesion_confidence", np.linspace(0, 100, n)),
    )
    assert fitted.transform_features(scrambled).equals(fitted.transform_features(cohort))
    without = cohort.drop([c for c in LEAK_COLUMNS if c in cohort.columns])
    assert fitted.transform_features(without).equals(fitted.transform_features(cohort))
    # fitting with or without the leak columns (labels given) gives the same model
    y = cohort.get_column("target").to_numpy()
    model = lineage.LineageClassifier(n_bags=1, n_estimators=5, n_jobs=1)
    with_leaks = model.fit(scrambled, y).predict_proba(cohort)
    no_leaks = lineage.LineageClassifier(n_bags=1, n_estimators=5, n_jobs=1).fit(without, y)
    np.testing.assert_array_equal(with_leaks, no_leaks.predict_proba(cohort))


def test_lineage_cross_validates(cohort: pl.DataFrame) -> None:
    folds = lb.patient_folds(cohort, n_splits=2, seed=0)
    for form in ("lgbm", "vote"):
        model = lineage.LineageClassifier(form=form, n_bags=2, n_estimators=5, n_jobs=1)
        result = lb.cross_val_oof(model, cohort, folds, progress=False)
        assert np.isfinite(result.oof).all() and 0.0 <= result.pauc <= 0.2
    with pytest.raises(ValueError, match="form"):
        lineage.LineageClassifier(form="svm").fit(cohort)


def test_docs_section_has_the_tables() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md").read_text("utf8")
    assert "## Robustness across worlds" in text
    for table_id in TABLES:
        assert f"<!-- table: {table_id} -->" in text
