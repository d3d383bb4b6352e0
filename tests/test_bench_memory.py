"""The memory benchmark's small mode runs and reports every stage."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "memory.py"


@pytest.mark.slow
def test_memory_benchmark_small_mode(tmp_path: Path) -> None:
    module = runpy.run_path(str(BENCH))
    out = tmp_path / "memory.json"
    assert module["main"](["--small", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [s["stage"] for s in result["stages"]] == [
        "simulate", "features", "cross-validated fit", "final fit", "predict"]
    assert 0 < result["peak_rss_gb"] < 64
    assert result["peak_rss_gb"] == max(s["peak_rss_gb"] for s in result["stages"])
    assert 0.0 <= result["stages"][2]["pauc"] <= 0.2
