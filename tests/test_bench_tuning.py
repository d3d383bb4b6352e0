"""``benchmarks/tuning.py --small`` runs end to end and writes a consistent JSON report."""

from __future__ import annotations

from pathlib import Path

import pytest
from _bench import run_small


@pytest.mark.slow
def test_small_tuning_benchmark_writes_report(tmp_path: Path) -> None:
    report, stdout = run_small("tuning.py", tmp_path / "tuning.json", timeout=300)
    for workers in (1, 2):
        run = report[f"workers_{workers}"]
        assert run["finished_trials"] >= 1 and run["failed"] == 0
        assert run["trials_per_minute"] == pytest.approx(
            60 * run["finished_trials"] / run["wall_seconds"], rel=0.02)
    assert report["speedup_2_over_1"] == pytest.approx(
        report["workers_2"]["trials_per_minute"] / report["workers_1"]["trials_per_minute"],
        rel=0.01)
    quality = report["quality"]
    for workers in (1, 2):
        run = quality[f"workers_{workers}"]
        # The defaults are the first trial, so the best can only be as good or better on the folds.
        assert run["best_oof_pauc"] >= run["defaults_oof_pauc"]
        for key in ("defaults_test_pauc", "best_test_pauc"):
            assert 0.0 <= run[key] <= 0.2
    assert quality["workers_1"]["defaults_test_pauc"] == quality["workers_2"]["defaults_test_pauc"]
    assert 0.0 <= quality["oracle_tabular_test_pauc"] <= 0.2
    assert "trials/min" in stdout
