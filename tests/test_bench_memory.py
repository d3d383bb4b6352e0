"""The memory benchmark's small mode runs and reports every stage."""

from __future__ import annotations

from pathlib import Path

import pytest
from _bench import run_small


@pytest.mark.slow
def test_memory_benchmark_small_mode(tmp_path: Path) -> None:
    # a fresh interpreter, so the peak RSS is the pipeline's and not pytest's
    result, _ = run_small("memory.py", tmp_path / "memory.json")
    assert [s["stage"] for s in result["stages"]] == [
        "simulate", "features", "cross-validated fit", "final fit", "predict"]
    assert 0 < result["peak_rss_gb"] < 64
    assert result["peak_rss_gb"] == max(s["peak_rss_gb"] for s in result["stages"])
    assert 0.0 <= result["stages"][2]["pauc"] <= 0.2
