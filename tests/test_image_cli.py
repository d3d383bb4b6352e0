"""``lesionboost embed``: Parquet output, shards that split a file exactly, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from _crops import write_crops
from _onnx_models import channel_mean_model
from lesionboost.cli import main

pytest.importorskip("onnxruntime", reason="onnxruntime runs the image models")


@pytest.fixture(scope="module")
def crops(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli")
    ids = [f"ISIC_{i:07d}" for i in range(23)]
    return write_crops(folder / "crops.hdf5", ids, seed=6, extra={"ISIC_BAD": b"\xff\xd8\xff"})


def test_embed_writes_parquet_with_flags(crops: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "emb.parquet"
    assert main(["embed", "--images", str(crops), "--out", str(out), "--json", "-q"]) == 0
    summary = json.loads(capsys.readouterr().out)
    table = pl.read_parquet(out)
    assert table.height == 24 and table.width == 2 + 132
    assert table.columns[:3] == ["isic_id", "image_failed", "emb_000"]
    assert table["isic_id"].to_list() == sorted(table["isic_id"].to_list())
    assert table.filter(pl.col("image_failed"))["isic_id"].to_list() == ["ISIC_BAD"]
    assert summary["images"] == 24 and summary["failed"] == 1 and summary["corrupt"] == 1
    assert summary["dim"] == 132 and summary["device"] == "cpu" and summary["model"] == "builtin"


def test_shards_partition_the_sorted_ids(crops: Path, tmp_path: Path) -> None:
    parts = []
    for index in range(3):
        out = tmp_path / f"part{index}.parquet"
        assert (
            main(
                ["embed", "--images", str(crops), "--out", str(out), "--shard", f"{index}/3", "-q"]
            )
            == 0
        )
        parts.append(pl.read_parquet(out))
    assert [p.height for p in parts] == [8, 8, 8]
    whole_out = tmp_path / "whole.parquet"
    assert main(["embed", "--images", str(crops), "--out", str(whole_out), "-q"]) == 0
    whole = pl.read_parquet(whole_out)
    joined = pl.concat(parts)
    assert joined["isic_id"].to_list() == whole["isic_id"].to_list()
    np.testing.assert_allclose(
        joined.drop("isic_id", "image_failed").to_numpy(),
        whole.drop("isic_id", "image_failed").to_numpy(),
        rtol=1e-6,
    )


def test_custom_model_metadata_filter_and_batch_size(crops: Path, tmp_path: Path) -> None:
    model = channel_mean_model(tmp_path / "m.onnx", size=16)
    ids_file = tmp_path / "meta.csv"
    pl.DataFrame({"isic_id": ["ISIC_0000003", "ISIC_0000001", "ISIC_0000003"]}).write_csv(ids_file)
    out = tmp_path / "e.parquet"
    code = main(
        [
            "embed",
            "--images",
            str(crops),
            "--image-model",
            str(model),
            "--out",
            str(out),
            "--metadata",
            str(ids_file),
            "--batch-size",
            "1",
            "--output-name",
            "logit",
            "-q",
        ]
    )
    assert code == 0
    table = pl.read_parquet(out)
    assert table["isic_id"].to_list() == ["ISIC_0000001", "ISIC_0000003"]
    assert table.columns == ["isic_id", "image_failed", "emb_000"]


def test_usage_errors_exit_2_and_keep_existing_output(crops: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "e.parquet"
    out.write_bytes(b"keep me")
    assert main(["embed", "--images", str(crops), "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err and out.read_bytes() == b"keep me"
    for shard in ("3/3", "a/b", "1/0"):
        assert (
            main(
                [
                    "embed",
                    "--images",
                    str(crops),
                    "--out",
                    str(tmp_path / "x.parquet"),
                    "--shard",
                    shard,
                ]
            )
            == 2
        )
    assert main(["embed", "--images", str(crops)]) == 2  # --out is required


def test_failures_exit_1_with_one_line(tmp_path: Path, crops: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    code = main(["embed", "--images", str(tmp_path / "absent.hdf5"), "--out", str(tmp_path / "o")])
    assert code == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "absent.hdf5" in err
    bad_model = tmp_path / "bad.onnx"
    bad_model.write_text("not a model")
    code = main(
        [
            "embed",
            "--images",
            str(crops),
            "--model",
            str(bad_model),
            "--out",
            str(tmp_path / "o.parquet"),
        ]
    )
    assert code == 1 and "could not load" in capsys.readouterr().err
    assert not (tmp_path / "o.parquet").exists()
