"""The memory benchmark's small mode runs, reports every stage and the tables the docs show."""

from __future__ import annotations

from pathlib import Path

import pytest

from _bench import check_tables, run_small


@pytest.mark.slow
def test_memory_benchmark_small_mode_smoke(tmp_path: Path) -> None:
    # a fresh interpreter, so the peak RSS is the pipeline's and not pytest's
    result, _ = run_small("memory.py", tmp_path / "memory.json")
    stages = result["stages"]
    assert [s["stage"] for s in stages] == [
        "simulate",
        "features",
        "cross-validated fit",
        "final fit",
        "predict",
    ]
    # a high-water mark never goes down, and the pipeline holds more than an idle interpreter
    peaks = [s["peak_rss_gb"] for s in stages]
    assert peaks == sorted(peaks) and peaks[0] > 0.05
    assert result["peak_rss_gb"] == max(peaks)
    assert result["meets_target"] is (result["peak_rss_gb"] <= result["target_gb"])
    assert stages[4]["rows"] > 0 and stages[1]["features"] > 100

    tables = check_tables(result, "memory")
    rows = tables["memory/stages"].rows
    assert [row[0] for row in rows] == [s["stage"] for s in stages]
    assert rows[-1][2] == f"{stages[-1]['peak_rss_gb']:.2f}"
    ((what, target, measured),) = tables["memory/headline"].rows
    assert target == "<= 4 GB" and measured.startswith(f"{result['peak_rss_gb']:.2f} GB")
