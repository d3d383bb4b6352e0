"""``benchmarks/devices.py --small`` runs end to end; without a GPU its CUDA cells say why."""

from __future__ import annotations

from pathlib import Path

from _bench import check_tables, run_small


def test_devices_benchmark_small_mode_smoke(tmp_path: Path) -> None:
    report, stdout = run_small("devices.py", tmp_path / "devices.json")
    assert report["small"] is True and report["n_splits"] == 3
    rows = report["results"]
    assert set(rows) == {
        "lightgbm alone",
        "xgboost alone",
        "catboost alone",
        "LesionBoostClassifier (defaults)",
    }
    for name, cells in rows.items():
        cpu = cells["cpu"]
        assert cpu["fit_seconds"] > 0 and cpu["wall_seconds"] >= cpu["fit_seconds"]
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

    tables = check_tables(report, "devices")
    models = {row[0]: row for row in tables["devices/models"].rows}
    assert list(models) == [
        "LightGBM alone",
        "XGBoost alone",
        "CatBoost alone",
        "`LesionBoostClassifier()` defaults",
    ]
    xgboost = rows["xgboost alone"]
    assert models["XGBoost alone"][1] == f"{xgboost['cpu']['pauc']:.4f}"
    if "unavailable" in xgboost["cuda"]:  # the reason shows instead of a figure
        assert models["XGBoost alone"][3] == f"-- ({xgboost['cuda']['unavailable']})"
        assert models["XGBoost alone"][5] == "--"
    refits = tables["devices/reproducibility"].rows
    assert all(row[1] == "yes" and row[2] == "0" for row in refits)  # the CPU refits above
    assert tables["devices/models"].columns[2] == f"CPU fit s ({report['machine']['cpus']} cores)"
