"""A saved model with image features stands alone, and a model fitted on an embeddings table
embeds new crops with the model that made the table."""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from _onnx_models import channel_mean_model
from lesionboost import DataWarning, ModelFileError, simulate_slice3d
from lesionboost.cli import main
from lesionboost.estimator import LesionBoostClassifier
from lesionboost.image import ImageModels, OnnxEmbedder, build_builtin_embedder
from lesionboost.persist import load_model, save_model
from lesionboost.simulate import write_slice3d

pytest.importorskip("onnxruntime", reason="image features need onnxruntime")
# Three training patients do not show every tile type that the test patients have.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Column 'tbp_tile_type' has level:lesionboost.exceptions.DataWarning"
)

FAST = {
    "members": ("lightgbm",),
    "n_bags": 1,
    "n_jobs": 1,
    "feature_groups": ("derived",),
    "lightgbm_params": {"n_estimators": 20},
}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("standalone")
    sim = simulate_slice3d(3, images=True, n_test_patients=2, seed=0)  # 1026 + 646 lesions
    paths = write_slice3d(sim, folder / "source")
    return {"train": sim.train, "test": sim.test, "paths": paths}


def _fit(model: LesionBoostClassifier, frame: pl.DataFrame) -> LesionBoostClassifier:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)  # leak columns dropped on purpose
        return model.fit(frame)


def _embed(images: Path, out: Path, *extra: str) -> Path:
    assert main(["embed", "--images", str(images), "--out", str(out), "-q", *extra]) == 0
    return out


def _image_model(case: str, inputs: Path, train_images: Path) -> Any:
    """The image_model of each case; every file it needs lies under ``inputs``."""
    if case == "builtin":
        return None
    if case == "builtin-onnx":
        return str(build_builtin_embedder(inputs / "builtin.onnx"))
    if case == "onnx-with-settings":  # settings that the .onnx file itself does not record
        model = channel_mean_model(inputs / "mean.onnx", size=16)
        return OnnxEmbedder(model, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3), providers="cpu")
    if case == "builtin-table":
        return str(_embed(train_images, inputs / "emb.parquet"))
    if case == "onnx-table":  # a foreign model and a non-default output, relative in the table
        channel_mean_model(inputs / "foreign.onnx", size=16)
        return str(
            _embed(
                train_images,
                inputs / "emb.parquet",
                "--model",
                str(inputs / "foreign.onnx"),
                "--output-name",
                "logit",
            )
        )
    raise AssertionError(case)


def _paths_of(image_model: Any) -> list[Path]:
    values = image_model if isinstance(image_model, (list, tuple)) else [image_model]
    return [Path(v) for v in values if v is not None]


def _move_and_load(saved: Path, tmp_path: Path) -> Any:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    moved = Path(shutil.move(str(saved), str(elsewhere / "model")))
    loaded = load_model(moved)
    for path in _paths_of(loaded.image_model):  # the copies inside the moved folder
        assert path.is_relative_to(moved.resolve()), path
        assert path.exists()
    return loaded, moved


@pytest.mark.parametrize(
    "case", ["builtin", "builtin-onnx", "onnx-with-settings", "builtin-table", "onnx-table"]
)
def test_moved_model_folder_predicts_identically_without_its_training_files(
    data: dict[str, Any], tmp_path: Path, case: str
) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    train_images = Path(shutil.copy(data["paths"]["train_images"], inputs / "train-image.hdf5"))
    test_images = str(data["paths"]["test_images"])
    image_model = _image_model(case, inputs, train_images)
    model = _fit(
        LesionBoostClassifier(**FAST, images=str(train_images), image_model=image_model),
        data["train"],
    )
    model.set_params(images=test_images)  # as `lesionboost predict --images` does
    features = model.transform_features(data["test"])
    # Every test crop is embedded, whether the model was fitted on crops or on a table.
    assert features["img_missing"].sum() == 0
    expected = model.predict_proba(data["test"])

    saved = save_model(model, tmp_path / "model")
    shutil.rmtree(inputs)  # the .onnx, the Parquet table and the training crops
    loaded, moved = _move_and_load(saved, tmp_path)
    loaded.set_params(images=test_images)
    np.testing.assert_array_equal(loaded.predict_proba(data["test"]), expected)
    # the image columns themselves, which a small ensemble may not split on
    assert_frame_equal(loaded.transform_features(data["test"]), features)

    manifest = json.loads((moved / "manifest.json").read_text())
    for entry in manifest["image"]["files"]:  # each copied file, with its size and hash
        blob = (moved / entry["path"]).read_bytes()
        assert entry["bytes"] == len(blob) and entry["sha256"] == hashlib.sha256(blob).hexdigest()
    assert str(tmp_path) not in json.dumps(manifest["params"]["image_model"])
    if case in ("builtin", "builtin-table"):  # the built-in needs no file
        assert loaded.image_model is None and manifest["image"]["files"] == []
    else:
        assert [p.parent.name for p in _paths_of(loaded.image_model)] == ["embedder"]
    # a loaded model saves again, from the copies in its folder
    again = load_model(save_model(loaded, tmp_path / "again"))
    np.testing.assert_array_equal(
        again.set_params(images=test_images).predict_proba(data["test"]), expected
    )


def test_a_model_fitted_on_a_table_scores_new_crops_like_one_fitted_on_the_crops(
    data: dict[str, Any], tmp_path: Path
) -> None:
    train_images = str(data["paths"]["train_images"])
    table = _embed(Path(train_images), tmp_path / "emb.parquet")
    on_table = _fit(
        LesionBoostClassifier(**FAST, images=train_images, image_model=str(table)), data["train"]
    )
    on_crops = _fit(LesionBoostClassifier(**FAST, images=train_images), data["train"])
    test_images = str(data["paths"]["test_images"])
    features = [
        m.set_params(images=test_images).transform_features(data["test"])
        for m in (on_table, on_crops)
    ]
    image_columns = [c for c in features[1].columns if c.startswith("img_")]
    assert features[0]["img_missing"].sum() == 0
    np.testing.assert_allclose(
        features[0].select(image_columns).to_numpy(),
        features[1].select(image_columns).to_numpy(),
        rtol=1e-5,
        atol=1e-6,
    )


def test_save_refuses_when_the_model_that_made_the_table_is_gone(
    data: dict[str, Any], tmp_path: Path
) -> None:
    train_images = data["paths"]["train_images"]
    foreign = channel_mean_model(tmp_path / "foreign.onnx", size=16)
    table = _embed(train_images, tmp_path / "emb.parquet", "--model", str(foreign))
    model = _fit(
        LesionBoostClassifier(**FAST, images=str(train_images), image_model=str(table)),
        data["train"],
    )
    foreign.write_bytes(b"another model now")
    model.set_params(images=str(data["paths"]["test_images"]))
    with pytest.warns(DataWarning, match="not in the embeddings table.*another SHA-256"):
        model.predict_proba(data["test"].head(20))
    with pytest.raises(ModelFileError, match=r"foreign\.onnx.*image_model=<the \.onnx"):
        save_model(model, tmp_path / "model")
    assert not (tmp_path / "model").exists()
    # A table without provenance cannot name its model either.
    bare = pl.read_parquet(table)
    model.set_params(images=str(train_images), image_model=bare)
    with pytest.warns(DataWarning, match="does not record the image model"):
        model.fit(data["train"])  # said at fit already
    with pytest.raises(ModelFileError, match="does not record the image model"):
        save_model(model, tmp_path / "model")
    assert not (tmp_path / "model").exists()


def test_moved_model_folder_with_fold_scorer_predicts_identically(
    data: dict[str, Any], tmp_path: Path
) -> None:
    inputs = tmp_path / "inputs"
    scorer = inputs / "scorer"
    scorer.mkdir(parents=True)
    train_images = Path(shutil.copy(data["paths"]["train_images"], inputs / "train-image.hdf5"))
    ids = data["train"]["isic_id"].to_list()
    models = [
        channel_mean_model(scorer / f"fold{k}.onnx", size=16, logit_weights=w)
        for k, w in enumerate([(-1.0, 0.0, 0.0), (0.0, -1.0, 0.0)])
    ]
    ImageModels(
        directory=scorer,
        model_paths=models,
        isic_ids=ids,
        oof_scores=np.linspace(-2, 2, len(ids)).astype(np.float32),
        folds=np.zeros(len(ids), np.int8),
        train_ids=[[], []],
        parity=[0.0, 0.0],
        image_size=16,
    ).save()
    model = _fit(
        LesionBoostClassifier(**FAST, images=str(train_images), image_model=str(scorer)),
        data["train"],
    )
    test_images = str(data["paths"]["test_images"])
    model.set_params(images=test_images)
    features = model.transform_features(data["test"])
    assert features["img_score"].is_not_null().all()
    expected = model.predict_proba(data["test"])
    saved = save_model(model, tmp_path / "model")
    shutil.rmtree(inputs)  # the fold models, their JSON and OOF scores, the training crops
    loaded, moved = _move_and_load(saved, tmp_path)
    loaded.set_params(images=test_images)
    np.testing.assert_array_equal(loaded.predict_proba(data["test"]), expected)
    assert_frame_equal(loaded.transform_features(data["test"]), features)
    assert loaded.image_state_["scorer"] == str(moved.resolve() / "image" / "scorer")
    manifest = json.loads((moved / "manifest.json").read_text())
    assert sorted(e["path"] for e in manifest["image"]["files"]) == [
        f"image/scorer/{n}"
        for n in ("fold-0.onnx", "fold-1.onnx", "image-models.json", "oof.parquet")
    ]
