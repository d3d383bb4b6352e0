"""``benchmarks/tuning.py --small`` runs end to end and writes a consistent report and tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from _bench import check_tables, run_small


@pytest.mark.slow
def test_tuning_benchmark_small_mode_smoke(tmp_path: Path) -> None:
    report, stdout = run_small("tuning.py", tmp_path / "tuning.json", timeout=300)
    for workers in (1, 2):
        run = report[f"workers_{workers}"]
        assert run["finished_trials"] >= 1 and run["failed"] == 0
        assert run["trials_per_minute"] == pytest.approx(
            60 * run["finished_trials"] / run["wall_seconds"], rel=0.02
        )
    assert report["speedup_2_over_1"] == pytest.approx(
        report["workers_2"]["trials_per_minute"] / report["workers_1"]["trials_per_minute"],
        rel=0.01,
    )
    quality = report["quality"]
    for workers in (1, 2):
        run = quality[f"workers_{workers}"]
        # The defaults are the first trial, so the best can only be as good or better on the folds.
        assert run["best_oof_pauc"] >= run["defaults_oof_pauc"]
    assert quality["workers_1"]["defaults_test_pauc"] == quality["workers_2"]["defaults_test_pauc"]
    # the oracle knows the risk: far above a score without skill (pAUC 0.02)
    assert quality["oracle_tabular_test_pauc"] > 0.07
    assert quality["oracle_full_test_pauc"] >= quality["oracle_tabular_test_pauc"] - 0.02
    assert "trials/min" in stdout

    tables = check_tables(report, "tuning")
    throughput = tables["tuning/throughput"]
    threads = report["workers_1"]["threads_per_worker"]
    assert throughput.columns[1] == f"1 worker x {threads} thread{'s' if threads > 1 else ''}"
    rows = {row[0]: row for row in throughput.rows}
    one, two = report["workers_1"], report["workers_2"]
    assert rows["trials per minute"][1] == f"{one['trials_per_minute']:.2f}"
    assert rows["finished trials (wall time)"][2].startswith(f"{two['finished_trials']} (")
    (speed, _held_out) = tables["tuning/headline"].rows
    assert speed[2].endswith(f"({report['speedup_2_over_1']:.2f}x)")
