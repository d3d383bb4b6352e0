"""``benchmarks/devices.py --small`` runs end to end; without a GPU its CUDA cells say why."""

from __future__ import annotations

from pathlib import Path

from _bench import run_small


def test_small_devices_benchmark(tmp_path: Path) -> None:
    report, stdout = run_small("devices.py", tmp_path / "devices.json")
    assert report["small"] is True and report["n_splits"] == 3
    rows = report["results"]
    assert set(rows) == {"lightgbm alone", "xgboost alone", "catboost alone",
                         "LesionBoostClassifier (defaults)"}
    for name, cells in rows.items():
        cpu = cells["cpu"]
        assert 0.0 <= cpu["pauc"] <= 0.2 and cpu["fit_seconds"] > 0
        # one seed on the CPU: the refit of fold 0 reproduces its scores exactly
        assert cpu["bit_identical_refit"] is True and cpu["max_abs_refit_difference"] == 0.0
        cuda = cells["cuda"]
        assert ("pauc" in cuda) != ("unavailable" in cuda)
        if report["machine"]["gpu"] is None:
            assert cuda["unavailable"] == "no NVIDIA GPU visible"
        assert f"| {name} |" in stdout
    # LightGBM's PyPI wheel has no CUDA learner: its own row never claims the GPU
    if report["cuda_support"]["lightgbm"] is not None:
        assert "unavailable" in rows["lightgbm alone"]["cuda"]
