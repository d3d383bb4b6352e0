"""``benchmarks/images.py --small`` runs end to end and writes its JSON report."""

from __future__ import annotations

from pathlib import Path

import pytest
from _bench import run_small

pytest.importorskip("onnxruntime", reason="the image benchmark runs ONNX models")


@pytest.mark.slow
def test_small_benchmark_writes_report(tmp_path: Path) -> None:
    report, stdout = run_small("images.py", tmp_path / "images.json")
    speed = report["speed"]
    best = speed["crops_per_s_best"]
    assert {"read", "decode", "embed_cpu", "model_only"} <= set(best)
    assert all(rate > 0 for rate in best.values())
    # Reading raw bytes cannot be slower than reading and decoding them.
    assert best["read"] > best["decode"]
    assert speed["ratio_decode_over_embed_cpu"] == pytest.approx(
        best["decode"] / best["embed_cpu"], rel=1e-2
    )
    assert set(speed["targets"]) == {
        "embed_cpu_at_least_1000_crops_per_s",
        "embed_cpu_within_1.5x_of_decode",
    }
    placeholder = report["placeholder"]
    if "skipped" not in placeholder:
        assert placeholder["crops"] == 3 and placeholder["failed"] == 0
    quality = report["quality"]
    if "skipped" not in quality:
        for row in quality["seeds"]:
            assert 0.0 <= row["tabular"] <= 0.2 and 0.0 <= row["tabular_image"] <= 0.2
            assert 0.0 <= row["oracle"] <= 0.2
    assert "decode / embed_cpu" in stdout
