"""``benchmarks/quality.py --small``: every model and oracle scored; the tables of the docs."""

from __future__ import annotations

from pathlib import Path

import pytest

from _bench import check_tables, run_small

#: pAUC above 80 % TPR of a constant or random score (the metric's floor for no skill).
NO_SKILL = 0.02


def test_quality_benchmark_small_mode_smoke(tmp_path: Path) -> None:
    report, stdout = run_small("quality.py", tmp_path / "quality.json", "--seeds", "2")
    assert report["small"] is True and report["seeds"] == 2
    summary = report["summary"]
    assert set(summary) == {
        "LightGBM (raw columns)",
        "HistGradientBoosting (raw columns)",
        "LesionBoostClassifier (defaults)",
        "tabular oracle",
        "full oracle",
        "gap_closed",
    }
    for name, row in summary.items():
        if name != "gap_closed":
            assert len(row["pauc"]) == 2
            assert row["mean"] == pytest.approx(sum(row["pauc"]) / 2)
    # the oracles know the risk: far above a score without skill, the full one above the tabular
    assert summary["tabular oracle"]["mean"] > NO_SKILL + 0.05
    assert summary["full oracle"]["mean"] >= summary["tabular oracle"]["mean"] - 0.01
    # the gap share is computed from the per-seed figures it summarises
    for k, run in enumerate(report["runs"]):
        raw = run["models"]["LightGBM (raw columns)"]["pauc"]
        ours = run["models"]["LesionBoostClassifier (defaults)"]["pauc"]
        oracle = run["oracles"]["tabular oracle"]
        assert summary["gap_closed"]["per_seed"][k] == pytest.approx((ours - raw) / (oracle - raw))
    assert report["predict"]["rows"] == 20_000 and report["predict"]["seconds"] > 0
    assert set(report["met"]) == {"gap_closed", "cv_seconds", "predict_500k_seconds"}
    assert "| LesionBoostClassifier (defaults) |" in stdout
    assert "gap closed" in stdout
    if report["real_sample"] is not None:  # the shared real file is present
        assert set(report["real_sample"]) == set(summary) - {
            "tabular oracle",
            "full oracle",
            "gap_closed",
        }

    tables = check_tables(report, "quality")
    models = tables["quality/models"]
    assert models.columns[1] == "simulator, 2 seeds (mean ± sd)"
    assert [row[0] for row in models.rows][-2:] == ["tabular oracle", "full oracle"]
    oracle_row = models.rows[-2]
    assert oracle_row[1] == (
        f"{summary['tabular oracle']['mean']:.4f} ± {summary['tabular oracle']['sd']:.4f}"
    )
    assert oracle_row[2:] == ["--", "--", "--"]  # an oracle is not fitted, nor known on real data
    gap = {row[0].split(" ")[0]: row for row in tables["quality/gap"].rows}
    ours = gap["`LesionBoostClassifier()`"]
    assert ours[1] == f"{100 * summary['gap_closed']['mean']:.0f} %"
    assert len(ours[2].split(" / ")) == 2
    headline = {row[0]: row for row in tables["quality/headline"].rows}
    assert headline["share of the raw-LightGBM → tabular-oracle gap closed"][1] == ">= 90 %"
    assert "A --small run" in models.note
