"""The data contract: read_metadata, validate, ImageStore and write_submission."""

from __future__ import annotations

import io
import multiprocessing
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from lesionboost import (
    DataWarning,
    ImageStore,
    ImageStoreError,
    MissingImageError,
    SchemaError,
    read_metadata,
    split_xy,
    write_submission,
)
from lesionboost.schema import LEAK_COLUMNS, TEST_COLUMNS, TRAIN_COLUMNS


def _write_csv(frame: pl.DataFrame, path: Path) -> Path:
    frame.write_csv(path)
    return path


# ------------------------------------------------------------------ the real files
def test_real_train_sample_loads_unchanged_and_clean(real_train_csv: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        meta = read_metadata(real_train_csv)
    assert meta.shape == (3449, 55)
    assert meta.columns == list(TRAIN_COLUMNS)
    assert dict(meta.schema) == TRAIN_COLUMNS
    assert meta["target"].sum() == 254
    assert meta["patient_id"].n_unique() == 614
    # quoted attribution with commas survives
    assert meta["attribution"].str.contains(",").any()
    # empty cells are nulls, not empty strings
    assert meta["lesion_id"].null_count() > 0
    assert (meta["lesion_id"] == "").sum() == 0


def test_real_test_file_is_read_as_test(real_test_csv: Path) -> None:
    meta = read_metadata(real_test_csv)
    assert meta.shape == (3, 44)
    assert meta.columns == list(TEST_COLUMNS)
    assert meta["attribution"][2] == "FNQH Cairns"


def test_real_test_file_refused_as_train(real_test_csv: Path) -> None:
    with pytest.raises(SchemaError, match=r"'target'.*test file"):
        read_metadata(real_test_csv, kind="train")


def test_train_file_read_as_test_warns_about_leak_columns(real_train_csv: Path) -> None:
    with pytest.warns(DataWarning, match="Train-only column"):
        meta = read_metadata(real_train_csv, kind="test")
    assert "target" in meta.columns


def test_parquet_and_folder_inputs(tmp_path: Path, tiny_metadata: pl.DataFrame) -> None:
    tiny_metadata.write_parquet(tmp_path / "train-metadata.parquet")
    from_file = read_metadata(tmp_path / "train-metadata.parquet")
    from_folder = read_metadata(tmp_path)
    assert from_file.equals(tiny_metadata)
    assert from_folder.equals(tiny_metadata)


def test_csv_round_trip_keeps_values(tmp_path: Path, tiny_metadata: pl.DataFrame) -> None:
    back = read_metadata(_write_csv(tiny_metadata, tmp_path / "m.csv"))
    assert back.columns == tiny_metadata.columns
    np.testing.assert_allclose(back["tbp_lv_H"].to_numpy(), tiny_metadata["tbp_lv_H"].to_numpy())


def test_split_xy_drops_every_leak_column(tiny_metadata: pl.DataFrame) -> None:
    X, y = split_xy(tiny_metadata)
    assert not set(LEAK_COLUMNS) & set(X.columns)
    assert "patient_id" in X.columns
    assert y.to_list() == tiny_metadata["target"].to_list()


# ------------------------------------------------------------------ bad input
def test_missing_column_names_file_and_column(tmp_path: Path, tiny_metadata: pl.DataFrame) -> None:
    path = _write_csv(tiny_metadata.drop("tbp_lv_H"), tmp_path / "broken.csv")
    with pytest.raises(SchemaError) as info:
        read_metadata(path)
    assert "tbp_lv_H" in str(info.value) and "broken.csv" in str(info.value)


def test_renamed_column_lists_missing_and_unexpected(tmp_path: Path, tiny_metadata: pl.DataFrame):
    path = _write_csv(tiny_metadata.rename({"tbp_lv_H": "hue"}), tmp_path / "renamed.csv")
    with pytest.raises(SchemaError, match=r"'tbp_lv_H'.*unexpected column\(s\): 'hue'"):
        read_metadata(path)


def test_text_in_numeric_column_names_value_and_row(tmp_path: Path, tiny_metadata: pl.DataFrame):
    frame = tiny_metadata.with_columns(pl.col("tbp_lv_A").cast(pl.String))
    frame = frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 2)
        .then(pl.lit("abc"))
        .otherwise(pl.col("tbp_lv_A"))
        .alias("tbp_lv_A")
    )
    path = _write_csv(frame, tmp_path / "text.csv")
    with pytest.raises(SchemaError) as info:
        read_metadata(path)
    message = str(info.value)
    assert "'tbp_lv_A'" in message and "'abc'" in message and "row(s) 3" in message
    assert "text.csv" in message


@pytest.mark.parametrize("column", ["patient_id", "isic_id"])
def test_null_id_is_an_error(tmp_path: Path, tiny_metadata: pl.DataFrame, column: str) -> None:
    frame = tiny_metadata.with_columns(
        pl.when(pl.int_range(pl.len()) == 4).then(None).otherwise(pl.col(column)).alias(column)
    )
    with pytest.raises(SchemaError, match=rf"'{column}'.*empty at data row\(s\) 5"):
        read_metadata(_write_csv(frame, tmp_path / "ids.csv"))


def test_duplicate_isic_id(tmp_path: Path, tiny_metadata: pl.DataFrame) -> None:
    frame = pl.concat([tiny_metadata, tiny_metadata.head(1)])
    with pytest.raises(SchemaError, match=r"duplicate value\(s\) 'ISIC_0000000'"):
        read_metadata(_write_csv(frame, tmp_path / "dup.csv"))


def test_empty_and_header_only_files(tmp_path: Path, tiny_metadata: pl.DataFrame) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(SchemaError, match="empty.csv is empty"):
        read_metadata(empty)
    header = tmp_path / "header.csv"
    header.write_text(",".join(tiny_metadata.columns) + "\n")
    with pytest.raises(SchemaError, match="header but no rows"):
        read_metadata(header)


def test_file_that_is_not_a_table(tmp_path: Path) -> None:
    blob = tmp_path / "image.csv"
    blob.write_bytes(bytes(range(256)) * 20)
    with pytest.raises(SchemaError, match="image.csv"):
        read_metadata(blob)


def test_a_json_file_is_named_as_json(tmp_path: Path, tiny_metadata: pl.DataFrame) -> None:
    path = tmp_path / "t.json"
    tiny_metadata.write_json(path)
    with pytest.raises(SchemaError, match=r"t\.json holds JSON, not a metadata table"):
        read_metadata(path)


def test_wrong_delimiter_gets_a_hint(tmp_path: Path, tiny_metadata: pl.DataFrame) -> None:
    path = tmp_path / "semi.csv"
    tiny_metadata.write_csv(path, separator=";")
    with pytest.raises(SchemaError, match="other than a comma"):
        read_metadata(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_metadata(tmp_path / "nope.csv")


def test_bad_target_values(tmp_path: Path, tiny_metadata: pl.DataFrame) -> None:
    frame = tiny_metadata.with_columns(pl.lit(2).alias("target"))
    with pytest.raises(SchemaError, match=r"'target'.*0 \(benign\) or 1"):
        read_metadata(_write_csv(frame, tmp_path / "t.csv"))


def test_extra_columns_are_kept_and_reported(tmp_path: Path, tiny_metadata: pl.DataFrame) -> None:
    frame = tiny_metadata.with_columns(pl.lit("x").alias("my_note"))
    with pytest.warns(DataWarning, match="my_note"):
        meta = read_metadata(_write_csv(frame, tmp_path / "extra.csv"))
    assert meta.columns[-1] == "my_note"


def test_out_of_range_values_warn_with_column(tmp_path: Path, tiny_metadata: pl.DataFrame):
    frame = tiny_metadata.with_columns((-pl.col("tbp_lv_areaMM2")).alias("tbp_lv_areaMM2"))
    with pytest.warns(DataWarning, match="'tbp_lv_areaMM2'.*physically possible"):
        read_metadata(_write_csv(frame, tmp_path / "neg.csv"))


def test_stdlext_equal_to_lext_warns(tmp_path: Path, tiny_metadata: pl.DataFrame) -> None:
    frame = tiny_metadata.with_columns(pl.col("tbp_lv_Lext").alias("tbp_lv_stdLExt"))
    with pytest.warns(DataWarning, match="'tbp_lv_stdLExt'.*equals 'tbp_lv_Lext'"):
        read_metadata(_write_csv(frame, tmp_path / "std.csv"))


def test_nan_and_inf_become_missing_with_a_warning(tmp_path: Path, tiny_metadata: pl.DataFrame):
    frame = tiny_metadata.with_columns(
        pl.when(pl.int_range(pl.len()) == 0)
        .then(float("inf"))
        .otherwise(pl.col("tbp_lv_x"))
        .alias("tbp_lv_x")
    )
    with pytest.warns(DataWarning, match="'tbp_lv_x'.*NaN/infinite"):
        meta = read_metadata(_write_csv(frame, tmp_path / "inf.csv"))
    assert meta["tbp_lv_x"][0] is None


# ------------------------------------------------------------------ ImageStore
def _jpeg(size: int, colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, format="JPEG", quality=75)
    return buffer.getvalue()


def test_real_test_images(real_test_images: Path) -> None:
    store = ImageStore(real_test_images)
    assert len(store) == 3
    assert sorted(store) == ["ISIC_0015657", "ISIC_0015729", "ISIC_0015740"]
    assert "ISIC_0015657" in store and "ISIC_9999999" not in store
    sizes = [Image.open(io.BytesIO(store.get_bytes(i))).size for i in store]
    assert sorted(sizes) == [(119, 119), (125, 125), (141, 141)]


def test_store_write_read_round_trip_and_missing_key(tmp_path: Path) -> None:
    payloads = {"ISIC_0000001": _jpeg(64, (200, 120, 90)), "ISIC_0000002": _jpeg(80, (90, 60, 40))}
    path = ImageStore.write(tmp_path / "images.hdf5", payloads.items())
    store = ImageStore(path)
    assert {i: store.get_bytes(i) for i in store} == payloads
    with pytest.raises(MissingImageError) as info:
        store.get_bytes("ISIC_0000003")
    assert isinstance(info.value, KeyError)
    assert "ISIC_0000003" in str(info.value) and "images.hdf5" in str(info.value)


def test_not_hdf5_and_truncated_files(tmp_path: Path) -> None:
    fake = tmp_path / "fake.hdf5"
    fake.write_text("isic_id,target\n")
    with pytest.raises(ImageStoreError, match="fake.hdf5 is not an HDF5 file"):
        ImageStore(fake)
    good = ImageStore.write(
        tmp_path / "good.hdf5", ((f"ISIC_{i:07d}", _jpeg(64, (i, 80, 80))) for i in range(50))
    )
    data = good.read_bytes()
    cut = tmp_path / "cut.hdf5"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises((ImageStoreError, MissingImageError)):
        store = ImageStore(cut)
        for isic_id in store:
            store.get_bytes(isic_id)
    with pytest.raises(FileNotFoundError, match="none.hdf5"):
        ImageStore(tmp_path / "none.hdf5")


def _read_in_child(store: ImageStore) -> int:
    return sum(len(store.get_bytes(i)) for i in store)


def test_store_is_safe_to_hand_to_worker_processes(tmp_path: Path) -> None:
    path = ImageStore.write(
        tmp_path / "mp.hdf5", ((f"ISIC_{i:07d}", _jpeg(48, (i * 20, 90, 60))) for i in range(6))
    )
    store = ImageStore(path)
    expected = _read_in_child(store)  # the parent has the file open before workers start
    for method in ("fork", "spawn"):
        with multiprocessing.get_context(method).Pool(2) as pool:
            assert pool.map(_read_in_child, [store, store]) == [expected, expected]


# ------------------------------------------------------------------ submissions
def test_submission_matches_kaggle_format(tmp_path: Path, real_sample_submission: Path) -> None:
    sample = pl.read_csv(real_sample_submission)
    out = write_submission(sample["isic_id"], sample["target"].to_numpy(), tmp_path / "sub.csv")
    assert out.read_text().splitlines()[0] == "isic_id,target"
    assert pl.read_csv(out).equals(sample)


def test_submission_is_atomic_and_validated(tmp_path: Path) -> None:
    path = tmp_path / "sub.csv"
    write_submission(["ISIC_1", "ISIC_2"], [0.1, 0.2], path)
    before = path.read_text()
    with pytest.raises(ValueError, match="non-finite"):
        write_submission(["ISIC_1", "ISIC_2"], [0.1, float("nan")], path)
    with pytest.raises(ValueError, match="2 isic_ids but 1 scores"):
        write_submission(["ISIC_1", "ISIC_2"], [0.1], path)
    with pytest.raises(ValueError, match="duplicate"):
        write_submission(["ISIC_1", "ISIC_1"], [0.1, 0.3], path)
    with pytest.raises(FileExistsError, match="--force"):
        write_submission(["ISIC_1"], [0.5], path, overwrite=False)
    assert path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub.csv"]  # no temp files left
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_submission(["ISIC_1"], [0.5], tmp_path / "missing" / "sub.csv")
