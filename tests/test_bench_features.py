"""``benchmarks/features.py`` and ``benchmarks/ablation.py`` in ``--small`` mode."""

from __future__ import annotations

from pathlib import Path

import pytest
from _bench import run_small


@pytest.mark.slow
def test_features_benchmark_times_both_engines_and_they_agree(tmp_path: Path) -> None:
    pytest.importorskip("pandas")
    report, stdout = run_small("features.py", tmp_path / "features.json", "--repeats", "1")
    assert report["rows"] > 10_000 and report["features"] > 400
    assert report["polars_best_s"] > 0 and report["pandas_best_s"] > 0
    assert report["speedup"] == pytest.approx(
        report["pandas_best_s"] / report["polars_best_s"], rel=0.02
    )
    assert report["polars_peak_rss_mb"] > 0 and report["pandas_peak_rss_mb"] > 0
    parity = report["parity"]
    assert parity["same_nulls"]
    assert parity["max_rel_diff_values"] < 1e-4
    assert parity["rank_cells_differing_share"] < 1e-3
    assert list(report["breakdown_polars_s"])[0] == "base"
    assert set(report["targets"]) == {"speedup_at_least_20x", "polars_at_most_1.5s"}
    assert "speedup pandas / polars" in stdout


@pytest.mark.slow
def test_ablation_benchmark_scores_each_configuration(tmp_path: Path) -> None:
    report, stdout = run_small("ablation.py", tmp_path / "ablation.json")
    table = report["simulator"]["table"]
    assert set(table) == {"raw", "+derived", "all, outlier_lof"}
    assert all(0.0 <= row["mean"] <= 0.2 for row in table.values())
    timing = report["simulator"]["outlier_timing"][0]
    assert timing["distance_score_s"] > 0 and timing["lof_score_s"] > 0
    if "table" in report.get("real", {}):
        assert "+counts" not in report["real"]["table"]  # counts leak on the real sample
        assert set(report["real"]["table"]) == {"raw", "+derived", "all, outlier_lof"}
    assert "OOF pAUC" in stdout
