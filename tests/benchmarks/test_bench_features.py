"""``benchmarks/features.py`` and ``benchmarks/ablation.py`` in ``--small`` mode."""

from __future__ import annotations

from pathlib import Path

import pytest

from _bench import check_tables, run_small


@pytest.mark.slow
def test_features_benchmark_small_mode_times_both_engines_and_they_agree(tmp_path: Path) -> None:
    pytest.importorskip("pandas")
    report, stdout = run_small("features.py", tmp_path / "features.json", "--repeats", "1")
    assert report["rows"] > 10_000 and report["features"] > 400
    assert report["polars_best_s"] > 0 and report["pandas_best_s"] > 0
    assert report["speedup"] == pytest.approx(
        report["pandas_best_s"] / report["polars_best_s"], rel=0.02
    )
    assert report["polars_peak_rss_mb"] > 0 and report["pandas_peak_rss_mb"] > 0
    # the default configuration and every column ranked, each checked against pandas
    configurations = {c["rank_columns"]: c for c in report["configurations"]}
    assert list(configurations) == ["none", "all"]
    assert configurations["all"]["features"] > configurations["none"]["features"]
    for configuration in configurations.values():
        parity = configuration["parity"]
        assert parity["same_nulls"]
        assert parity["max_rel_diff_values"] < 1e-4
        assert parity["rank_cells_differing_share"] < 1e-3
    assert configurations["none"]["parity"]["max_rank_diff"] == 0.0  # no ranks to differ
    assert list(report["breakdown_polars_s"])[0] == "base"
    assert set(report["targets"]) == {"speedup_at_least_20x", "polars_at_most_1.5s"}
    assert "speedup pandas / polars" in stdout

    tables = check_tables(report, "features")
    speed = tables["features/speed"]
    assert [row[1] for row in speed.rows] == [
        str(configurations["none"]["features"]),
        str(configurations["all"]["features"]),
    ]
    assert speed.rows[0][4] == f"{report['speedup']:.1f}x"
    headline = {row[1]: row[2] for row in tables["features/headline"].rows}
    assert headline[">= 20x"].startswith(f"{report['speedup']:.1f}x")
    groups = tables["features/groups"]
    assert len(groups.rows) == len(report["breakdown_polars_s"])
    assert groups.columns[1].endswith("(best of 1)")


@pytest.mark.slow
def test_ablation_benchmark_small_mode_scores_each_configuration(tmp_path: Path) -> None:
    report, stdout = run_small("ablation.py", tmp_path / "ablation.json")
    table = report["simulator"]["table"]
    assert set(table) == {"raw", "+derived", "all, outlier_lof"}
    for row in table.values():
        assert row["mean"] == pytest.approx(sum(row["per_seed"]) / len(row["per_seed"]), abs=1e-4)
    timing = report["simulator"]["outlier_timing"][0]
    assert timing["distance_score_s"] > 0 and timing["lof_score_s"] > 0
    # one polars query against one LocalOutlierFactor per patient
    assert timing["lof_score_s"] > timing["distance_score_s"]
    with_real = "table" in report.get("real", {})
    if with_real:
        assert "+counts" not in report["real"]["table"]  # counts leak on the real sample
        assert set(report["real"]["table"]) == {"raw", "+derived", "all, outlier_lof"}
    assert "OOF pAUC" in stdout

    tables = check_tables(report, "ablation")
    groups = tables["ablation/groups"]
    assert [row[0] for row in groups.rows] == [
        "raw columns + codes",
        "+ derived",
        "all, outlier score = per-patient LOF",
    ]
    raw = table["raw"]
    assert groups.rows[0][1] == f"{raw['mean']:.4f} ({raw['sd']:.4f})"
    assert (groups.rows[0][2] == "--") is not with_real
    outlier = tables["ablation/outlier"]
    assert outlier.columns[1] == f"seconds on {timing['rows']:,} lesions"
    assert outlier.rows[1][1] == f"{timing['lof_score_s']:.2f}"
