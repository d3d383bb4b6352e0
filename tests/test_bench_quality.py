"""``benchmarks/quality.py --small`` runs end to end and reports every row the issue asks for."""

from __future__ import annotations

from pathlib import Path

from _bench import run_small


def test_small_quality_benchmark(tmp_path: Path) -> None:
    report, stdout = run_small("quality.py", tmp_path / "quality.json", "--seeds", "2")
    assert report["small"] is True and report["seeds"] == 2
    summary = report["summary"]
    assert set(summary) == {
        "LightGBM (raw columns)", "HistGradientBoosting (raw columns)",
        "LesionBoostClassifier (defaults)", "tabular oracle", "full oracle", "gap_closed",
    }
    for name, row in summary.items():
        if name != "gap_closed":
            assert len(row["pauc"]) == 2 and all(0.0 <= v <= 0.2 for v in row["pauc"])
    # the oracle is the ceiling of the simulator: nothing fitted may beat the full oracle by much
    assert summary["full oracle"]["mean"] >= summary["tabular oracle"]["mean"] - 0.01
    assert len(summary["gap_closed"]["per_seed"]) == 2
    assert report["predict"]["rows"] == 20_000 and report["predict"]["seconds"] > 0
    assert set(report["met"]) == {"gap_closed", "cv_seconds", "predict_500k_seconds"}
    assert "| LesionBoostClassifier (defaults) |" in stdout
    assert "gap closed" in stdout
    if report["real_sample"] is not None:  # the shared real file is present
        assert set(report["real_sample"]) == set(summary) - {"tabular oracle", "full oracle",
                                                             "gap_closed"}
