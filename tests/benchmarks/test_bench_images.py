"""``benchmarks/images.py --small`` runs end to end and writes its report and tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from _bench import check_tables, run_small

pytest.importorskip("onnxruntime", reason="the image benchmark runs ONNX models")


@pytest.mark.slow
def test_images_benchmark_small_mode_smoke(tmp_path: Path) -> None:
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
    assert "skipped" not in quality
    for row in quality["seeds"]:
        # the full oracle knows the image term too: far above a score without skill (0.02)
        assert row["oracle"] > 0.07
        assert row["oracle"] >= row["tabular_oracle"] - 0.02
        gap = row["oracle"] - row["tabular"]
        assert row["tabular_image_gap_closed"] == pytest.approx(
            (row["tabular_image"] - row["tabular"]) / gap
        )
    assert "decode / embed_cpu" in stdout

    # no CNN in --small: its table is the one the docs show that this run cannot fill
    tables = check_tables(report, "images", absent=("images/cnn",))
    stages = {row[0]: row for row in tables["images/speed"].rows}
    assert len(stages) == len(best)
    assert stages["read + decode (64 px)"][1] == f"{best['decode']:,.0f}"
    assert tables["images/speed"].columns[1] == f"crops/s (best of {len(speed['runs']['read'])})"
    (row,) = tables["images/quality"].rows  # one seed in --small, so no mean row
    assert row[0] == "0" and row[4] == f"{quality['seeds'][0]['tabular_image']:.4f}"
    headline = {r[0]: r for r in tables["images/headline"].rows}
    decode_embed = headline["image read + decode / + built-in embedder (64 px)"][2]
    assert decode_embed.startswith(f"{best['decode']:,.0f} / {best['embed_cpu']:,.0f} crops/s")


def test_images_tables_show_the_cnn_only_when_it_ran() -> None:
    from _bench import import_benchmark

    images = import_benchmark("images.py")
    seed = {
        "seed": 0, "patients": 10, "oracle": 0.18, "tabular_oracle": 0.17, "tabular": 0.15,
        "tabular_image": 0.16, "tabular_image_gap_closed": 1 / 3,
    }  # fmt: skip
    summary = {k: {"mean": v, "per_seed": [v]} for k, v in seed.items() if k not in ("seed",)}
    report = {
        "small": False,
        "machine": {"cores": 2, "load_average_start": [0.0]},
        "placeholder": {"skipped": "not found"},
        "quality": {"folds": 5, "seeds": [seed], "summary": summary},
    }
    ids = [t.id for t in images.tables(report)]
    assert ids == ["images/headline", "images/quality"]  # no speed run, no CNN
    headline = images.tables(report)[0]
    assert headline.rows[0][2] == "--" and headline.rows[2][2] == "--"
    assert headline.rows[1][2] == "0.1500 → 0.1600 (33 % of the gap)"
    cnn = {"cnn_oof_pauc": 0.11, "tabular_image_cnn": 0.158}
    seed.update(cnn)
    summary.update({k: {"mean": v, "per_seed": [v]} for k, v in cnn.items()})
    tables = {t.id: t for t in images.tables(report)}
    assert tables["images/cnn"].rows[1][1:] == ["0.1100", "0.1580"]
