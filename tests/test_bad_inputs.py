"""A table of bad inputs across the library and the command line (issue: reliability).

Every case states the exception type (or CLI exit code) and the words the
message must contain: the file, column or value at fault and what to do. A
case also fails when the error escapes from inside a third-party library
(polars, LightGBM, XGBoost, CatBoost, h5py, onnxruntime) instead of being
raised by lesionboost with an explanation.
"""

from __future__ import annotations

import json
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from lesionboost import (
    DataWarning,
    ImageStore,
    ImageStoreError,
    LesionBoostClassifier,
    LesionFeaturizer,
    MissingImageError,
    ModelFileError,
    SchemaError,
    cross_val_oof,
    load_model,
    read_metadata,
    save_model,
    split_xy,
)
from lesionboost.cli import main as cli_main
from tests._crops import write_crops
from tests._onnx_models import channel_mean_model, flat_input_model
from tests.conftest import make_tiny_metadata

FAST = {
    "members": ("lightgbm",),
    "n_bags": 1,
    "n_jobs": 1,
    "neg_ratio": None,
    "feature_groups": ("derived", "patient"),
    "lightgbm_params": {"n_estimators": 10, "min_data_in_leaf": 2},
}
THIRD_PARTY = ("polars", "lightgbm", "xgboost", "catboost", "h5py", "onnxruntime", "sklearn")


@dataclass
class World:
    """Everything the cases need, built once per module."""

    root: Path
    train: pl.DataFrame
    train_csv: Path
    test_csv: Path
    model_dir: Path
    images: Path
    onnx_model: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("bad")
    train = make_tiny_metadata(n_patients=8, lesions=6, seed=1)
    train_csv = root / "train.csv"
    train.write_csv(train_csv)
    test_csv = root / "test.csv"
    split_xy(train)[0].write_csv(test_csv)
    X, y = split_xy(train)
    model = LesionBoostClassifier(**FAST).fit(X, y)
    model_dir = save_model(model, root / "model")
    images = write_crops(root / "images.hdf5", train["isic_id"].to_list()[:6], seed=0)
    onnx_model = channel_mean_model(root / "tiny.onnx", size=16)
    return World(root, train, train_csv, test_csv, Path(model_dir), images, onnx_model)


def _csv(world: World, frame: pl.DataFrame, name: str) -> Path:
    path = world.root / name
    frame.write_csv(path)
    return path


def _fresh_model_copy(world: World, name: str) -> Path:
    import shutil

    target = world.root / name
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(world.model_dir, target)
    return target


def _first_member(model_dir: Path) -> tuple[dict[str, Any], Path]:
    manifest = json.loads((model_dir / "manifest.json").read_text())

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if "sha256" in node and "path" in node:
                return node
            for value in node.values():
                found = walk(value)
                if found:
                    return found
        if isinstance(node, list):
            for value in node:
                found = walk(value)
                if found:
                    return found
        return None

    entry = walk(manifest)
    assert entry is not None, "manifest lists no member files"
    return manifest, model_dir / entry["path"]


# ----------------------------------------------------------------------------- the cases
def c_empty_file(w: World) -> Any:
    (w.root / "empty.csv").write_bytes(b"")
    return read_metadata(w.root / "empty.csv")


def c_header_only(w: World) -> Any:
    (w.root / "header.csv").write_text(",".join(w.train.columns) + "\n")
    return read_metadata(w.root / "header.csv")


def c_wrong_delimiter(w: World) -> Any:
    w.train.write_csv(w.root / "semicolon.csv", separator=";")
    return read_metadata(w.root / "semicolon.csv")


def c_test_file_as_train(w: World) -> Any:
    return read_metadata(w.test_csv, kind="train")


def c_missing_column(w: World) -> Any:
    return read_metadata(_csv(w, w.train.drop("tbp_lv_areaMM2"), "missing.csv"))


def c_duplicated_column(w: World) -> Any:
    text = w.train_csv.read_text().splitlines()
    header = text[0].replace("tbp_lv_B,", "tbp_lv_A,", 1)
    (w.root / "dupcol.csv").write_text("\n".join([header, *text[1:]]) + "\n")
    return read_metadata(w.root / "dupcol.csv")


def c_renamed_column(w: World) -> Any:
    return read_metadata(_csv(w, w.train.rename({"tbp_lv_H": "hue"}), "renamed.csv"))


def c_string_in_numeric(w: World) -> Any:
    frame = w.train.with_columns(pl.col("clin_size_long_diam_mm").cast(pl.String))
    frame = frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 3)
        .then(pl.lit("3,4 mm"))
        .otherwise(pl.col("clin_size_long_diam_mm"))
        .alias("clin_size_long_diam_mm")
    )
    return read_metadata(_csv(w, frame, "strings.csv"))


def c_null_patient_id(w: World) -> Any:
    frame = w.train.with_columns(
        pl.when(pl.int_range(pl.len()) == 0)
        .then(None)
        .otherwise(pl.col("patient_id"))
        .alias("patient_id")
    )
    return read_metadata(_csv(w, frame, "nullpatient.csv"))


def c_duplicate_isic_id(w: World) -> Any:
    return read_metadata(_csv(w, pl.concat([w.train, w.train.tail(1)]), "dupid.csv"))


def c_labels_not_binary_file(w: World) -> Any:
    return read_metadata(_csv(w, w.train.with_columns(pl.lit(3).alias("target")), "t3.csv"))


def c_not_a_table(w: World) -> Any:
    (w.root / "binary.csv").write_bytes(np.random.default_rng(0).bytes(4000))
    return read_metadata(w.root / "binary.csv")


def c_featurizer_without_patient_id(w: World) -> Any:
    return LesionFeaturizer().fit(split_xy(w.train)[0].drop("patient_id"))


def c_featurizer_not_a_frame(w: World) -> Any:
    return LesionFeaturizer().fit(np.zeros((3, 4)))


def c_estimator_all_benign(w: World) -> Any:
    X, _ = split_xy(w.train)
    return LesionBoostClassifier(**FAST).fit(X, np.zeros(X.height, dtype=int))


def c_estimator_labels_not_binary(w: World) -> Any:
    X, _ = split_xy(w.train)
    return LesionBoostClassifier(**FAST).fit(X, np.arange(X.height) % 3)


def c_estimator_label_length(w: World) -> Any:
    X, y = split_xy(w.train)
    return LesionBoostClassifier(**FAST).fit(X, y[:-1])


def c_estimator_no_patient_id(w: World) -> Any:
    X, y = split_xy(w.train)
    return LesionBoostClassifier(**FAST).fit(X.drop("patient_id"), y)


def c_oof_fold_splits_patient(w: World) -> Any:
    folds = np.arange(w.train.height) % 2
    return cross_val_oof(LesionBoostClassifier(**FAST), w.train, folds, progress=False)


def c_store_not_hdf5(w: World) -> Any:
    return ImageStore(w.train_csv)


def c_store_truncated(w: World) -> Any:
    data = w.images.read_bytes()
    (w.root / "cut.hdf5").write_bytes(data[: len(data) // 3])
    store = ImageStore(w.root / "cut.hdf5")
    return [store.get_bytes(i) for i in store]


def c_store_missing_id(w: World) -> Any:
    return ImageStore(w.images).get_bytes("ISIC_9999999")


def c_embedder_wrong_rank(w: World) -> Any:
    from lesionboost.image import OnnxEmbedder

    return OnnxEmbedder(flat_input_model(w.root / "flat.onnx"))


def c_embedder_not_onnx(w: World) -> Any:
    from lesionboost.image import OnnxEmbedder

    return OnnxEmbedder(w.train_csv)


def c_model_newer_version(w: World) -> Any:
    target = _fresh_model_copy(w, "newer")
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["format_version"] = int(manifest["format_version"]) + 1
    (target / "manifest.json").write_text(json.dumps(manifest))
    return load_model(target)


def c_model_tampered_member(w: World) -> Any:
    target = _fresh_model_copy(w, "tampered")
    _, member = _first_member(target)
    member.write_bytes(member.read_bytes()[:-1] + b"x")
    return load_model(target)


def c_model_missing_member(w: World) -> Any:
    target = _fresh_model_copy(w, "nomember")
    _, member = _first_member(target)
    member.unlink()
    return load_model(target)


def c_model_escaping_path(w: World) -> Any:
    target = _fresh_model_copy(w, "escape")
    manifest, member = _first_member(target)
    text = (target / "manifest.json").read_text()
    relative = member.relative_to(target).as_posix()
    (target / "manifest.json").write_text(text.replace(f'"{relative}"', '"../model/escape.txt"'))
    return load_model(target)


def c_model_not_a_directory(w: World) -> Any:
    return load_model(w.train_csv)


# (case, exception type, words the message must contain)
LIBRARY_CASES: list[tuple[Callable[[World], Any], type[BaseException], tuple[str, ...]]] = [
    (c_empty_file, SchemaError, ("empty.csv", "empty")),
    (c_header_only, SchemaError, ("header.csv", "no rows")),
    (c_wrong_delimiter, SchemaError, ("semicolon.csv", "comma")),
    (c_test_file_as_train, SchemaError, ("'target'", "test file")),
    (c_missing_column, SchemaError, ("missing.csv", "tbp_lv_areaMM2")),
    (c_duplicated_column, SchemaError, ("dupcol.csv", "tbp_lv_A")),
    (c_renamed_column, SchemaError, ("'tbp_lv_H'", "'hue'")),
    (c_string_in_numeric, SchemaError, ("'clin_size_long_diam_mm'", "'3,4 mm'", "row(s) 4")),
    (c_null_patient_id, SchemaError, ("'patient_id'", "row(s) 1")),
    (c_duplicate_isic_id, SchemaError, ("'isic_id'", "duplicate")),
    (c_labels_not_binary_file, SchemaError, ("'target'", "0 (benign) or 1")),
    (c_not_a_table, SchemaError, ("binary.csv",)),
    (c_featurizer_without_patient_id, SchemaError, ("patient_id",)),
    (c_featurizer_not_a_frame, TypeError, ("DataFrame", "ndarray")),
    (c_estimator_all_benign, ValueError, ("no malignant (1)", "both benign and malignant")),
    (c_estimator_labels_not_binary, ValueError, ("0 (benign) or 1 (malignant)", "[2]")),
    (c_estimator_label_length, ValueError, ("47", "48")),
    (c_estimator_no_patient_id, SchemaError, ("patient_id",)),
    (c_oof_fold_splits_patient, ValueError, ("patient",)),
    (c_store_not_hdf5, ImageStoreError, ("train.csv", "not an HDF5")),
    (c_store_truncated, (ImageStoreError, MissingImageError), ("cut.hdf5",)),
    (c_store_missing_id, MissingImageError, ("ISIC_9999999", "images.hdf5")),
    (c_embedder_wrong_rank, ValueError, ("flat.onnx", "rank")),
    (c_embedder_not_onnx, ValueError, ("train.csv",)),
    (c_model_newer_version, ModelFileError, ("newer", "version")),
    (c_model_tampered_member, ModelFileError, ("SHA-256",)),
    (c_model_missing_member, ModelFileError, ("nomember",)),
    (c_model_escaping_path, ModelFileError, ("escape",)),
    (c_model_not_a_directory, ModelFileError, ("train.csv",)),
]


@pytest.mark.parametrize(
    ("case", "error", "words"), LIBRARY_CASES, ids=[c[0].__name__[2:] for c in LIBRARY_CASES]
)
def test_library_bad_input(world: World, case, error, words) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        with pytest.raises(error) as info:
            case(world)
    message = str(info.value)
    for word in words:
        assert word.lower() in message.lower(), f"{word!r} not in: {message}"
    raised_in = traceback.extract_tb(info.value.__traceback__)[-1].filename
    assert "lesionboost" in raised_in and not any(
        f"site-packages/{lib}" in raised_in for lib in THIRD_PARTY
    ), f"error escaped from {raised_in}: {message}"


# ----------------------------------------------------------------------------- warnings, not errors
def test_unknown_categories_warn_and_still_predict(world: World) -> None:
    X, y = split_xy(world.train)
    model = LesionBoostClassifier(**FAST).fit(X, y)
    new = X.with_columns(pl.lit("Alfred Hospital").alias("attribution"))
    with pytest.warns(DataWarning, match="Alfred Hospital"):
        scores = model.predict_proba(new)[:, 1]
    assert np.isfinite(scores).all()


def test_leak_columns_in_X_are_dropped_with_a_warning(world: World) -> None:
    with pytest.warns(DataWarning, match="target"):
        features = LesionFeaturizer().fit_transform(world.train)
    assert "target" not in features.columns


def test_nan_and_inf_in_every_numeric_column(world: World) -> None:
    X, y = split_xy(world.train)
    numeric = [c for c, t in X.schema.items() if t.is_numeric()]
    poisoned = X.with_columns(
        pl.when(pl.int_range(pl.len()) % 3 == 0)
        .then(float("inf"))
        .when(pl.int_range(pl.len()) % 3 == 1)
        .then(float("nan"))
        .otherwise(pl.col(c))
        .alias(c)
        for c in numeric
    )
    features = LesionFeaturizer().fit_transform(poisoned)
    values = features.select(pl.col(pl.Float32, pl.Float64)).to_numpy()
    assert not np.isinf(values).any()
    scores = LesionBoostClassifier(**FAST).fit(poisoned, y).predict_proba(poisoned)[:, 1]
    assert np.isfinite(scores).all()


def test_one_lesion_per_patient_and_one_patient(world: World) -> None:
    X, y = split_xy(world.train)
    singles = X.with_columns(pl.col("isic_id").str.replace("ISIC_", "IP_").alias("patient_id"))
    model = LesionBoostClassifier(**FAST).fit(singles, y)
    assert np.isfinite(model.predict_proba(singles)).all()
    one = X.with_columns(pl.lit("IP_0000001").alias("patient_id"))
    assert np.isfinite(LesionBoostClassifier(**FAST).fit(one, y).predict_proba(one)).all()


def test_test_frame_with_other_column_order_scores_the_same(world: World) -> None:
    X, y = split_xy(world.train)
    model = LesionBoostClassifier(**FAST).fit(X, y)
    shuffled = X.select(list(reversed(X.columns)))
    assert np.array_equal(model.predict_proba(X), model.predict_proba(shuffled))


def test_a_fold_without_positives_is_reported_not_fatal(world: World) -> None:
    frame = world.train
    patients = frame["patient_id"].unique(maintain_order=True).to_list()
    positive = set(frame.filter(pl.col("target") == 1)["patient_id"].to_list())
    benign_only = [p for p in patients if p not in positive]
    assert len(positive) >= 2 and benign_only
    # positives split over folds 0 and 1; fold 2 holds only benign patients
    fold_of = {p: i % 2 for i, p in enumerate(sorted(positive))} | {p: 2 for p in benign_only}
    folds = np.array([fold_of[p] for p in frame["patient_id"].to_list()])
    with pytest.warns(DataWarning, match="no malignant"):
        result = cross_val_oof(LesionBoostClassifier(**FAST), frame, folds, progress=False)
    assert np.isnan(result.fold_scores[2]) and np.isfinite(result.fold_scores[:2]).all()
    assert np.isfinite(result.oof).all() and np.isfinite(result.pauc)


def test_corrupt_jpeg_gives_a_flagged_nan_row(world: World) -> None:
    from lesionboost.image import OnnxEmbedder

    ids = world.train["isic_id"].to_list()[:3]
    path = write_crops(world.root / "corrupt.hdf5", ids[:2], extra={ids[2]: b"\xff\xd8not a jpeg"})
    embedder = OnnxEmbedder(world.onnx_model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        embedding = embedder.embed(ImageStore(path), ids + ["ISIC_7654321"])
    assert np.isfinite(embedding[:2]).all()
    assert np.isnan(embedding[2:]).all()


# ----------------------------------------------------------------------------- the command line
def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli_main(args)
    err = capsys.readouterr().err
    return code, err


CLI_CASES: list[tuple[str, Callable[[World], list[str]], int, tuple[str, ...]]] = [
    (
        "tune-missing-data",
        lambda w: ["tune", "--data", str(w.root / "nope.csv"), "--out", str(w.root / "run-x")],
        1,
        ("nope.csv",),
    ),
    ("tune-bad-trials", lambda w: ["tune", "--trials", "many"], 2, ("--trials",)),
    (
        "predict-missing-model",
        lambda w: [
            "predict",
            "--model",
            str(w.root / "no-model"),
            "--data",
            str(w.test_csv),
            "--out",
            str(w.root / "s.csv"),
        ],
        1,
        ("no-model",),
    ),
    (
        "predict-existing-output",
        lambda w: [
            "predict",
            "--model",
            str(w.model_dir),
            "--data",
            str(w.test_csv),
            "--out",
            str(w.train_csv),
        ],
        2,
        ("--force",),
    ),
    (
        "predict-unwritable-output",
        lambda w: [
            "predict",
            "--model",
            str(w.model_dir),
            "--data",
            str(w.test_csv),
            "--out",
            str(w.root / "no" / "dir" / "s.csv"),
        ],
        2,
        ("does not exist",),
    ),
    (
        "predict-bad-metadata",
        lambda w: [
            "predict",
            "--model",
            str(w.model_dir),
            "--data",
            str(w.root / "semicolon.csv"),
            "--out",
            str(w.root / "s2.csv"),
        ],
        1,
        ("comma",),
    ),
    (
        "simulate-negative-patients",
        lambda w: ["simulate", "--out", str(w.root / "sim"), "--patients", "-3"],
        2,
        ("patients",),
    ),
    ("report-not-a-run", lambda w: ["report", str(w.root / "nothing-here")], 1, ("nothing-here",)),
    (
        "embed-not-hdf5",
        lambda w: ["embed", "--images", str(w.train_csv), "--out", str(w.root / "e.parquet")],
        1,
        ("not an HDF5",),
    ),
    (
        "embed-bad-shard",
        lambda w: [
            "embed",
            "--images",
            str(w.images),
            "--out",
            str(w.root / "e.parquet"),
            "--shard",
            "5/2",
        ],
        2,
        ("shard",),
    ),
]


@pytest.mark.parametrize(
    ("name", "argv", "code", "words"), CLI_CASES, ids=[c[0] for c in CLI_CASES]
)
def test_cli_bad_input(world: World, capsys, name, argv, code, words) -> None:
    if name == "predict-bad-metadata":
        world.train.write_csv(world.root / "semicolon.csv", separator=";")
    status, err = _cli(argv(world), capsys)
    assert status == code, err
    assert "Traceback" not in err
    for word in words:
        assert word in err, f"{word!r} not in: {err}"
