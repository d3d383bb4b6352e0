"""Image features in LesionBoostClassifier: embedding tables, fold scorers, CV, model files."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from _crops import write_crops
from _onnx_models import channel_mean_model
from conftest import make_tiny_metadata
from lesionboost import DataWarning
from lesionboost.cli import main
from lesionboost.cv import patient_folds
from lesionboost.estimator import LesionBoostClassifier, cross_val_oof
from lesionboost.image import ImageModels
from lesionboost.persist import load_model, save_model

pytest.importorskip("onnxruntime", reason="image features need onnxruntime")

FAST = {
    "members": ("lightgbm",),
    "n_bags": 1,
    "n_jobs": 1,
    "neg_ratio": None,
    "feature_groups": ("derived",),
    "lightgbm_params": {"n_estimators": 15, "min_data_in_leaf": 3, "learning_rate": 0.3},
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    folder = tmp_path_factory.mktemp("estimator")
    meta = make_tiny_metadata(n_patients=16, lesions=6, seed=4)
    target = meta["target"].to_numpy().astype(bool)
    ids = meta["isic_id"].to_list()
    images = write_crops(folder / "crops.hdf5", ids, atypical=target, seed=8)
    table = folder / "emb.parquet"
    assert main(["embed", "--images", str(images), "--out", str(table), "-q"]) == 0
    return {"folder": folder, "meta": meta, "images": images, "table": table}


def _fit(model: LesionBoostClassifier, meta: pl.DataFrame) -> LesionBoostClassifier:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)  # leak columns dropped on purpose
        return model.fit(meta)


def test_precomputed_embeddings_match_live_embedding(setup: dict[str, object]) -> None:
    meta = setup["meta"]
    live = _fit(LesionBoostClassifier(**FAST, images=str(setup["images"])), meta)
    cached = _fit(
        LesionBoostClassifier(**FAST, images=str(setup["images"]), image_model=str(setup["table"])),
        meta,
    )
    assert [c for c in cached.ensemble_.feature_names_in_ if c.startswith("img_")] == [
        c for c in live.ensemble_.feature_names_in_ if c.startswith("img_")
    ]
    np.testing.assert_allclose(cached.predict_proba(meta), live.predict_proba(meta))


def test_fold_scorer_feeds_img_score_and_survives_a_model_file(
    setup: dict[str, object], tmp_path: Path
) -> None:
    meta = setup["meta"]
    folder = tmp_path / "scorer"
    folder.mkdir()
    models = [
        channel_mean_model(folder / f"fold{k}.onnx", size=16, logit_weights=w)
        for k, w in enumerate([(-1.0, 0.0, 0.0), (0.0, -1.0, 0.0)])
    ]
    ids = meta["isic_id"].to_list()
    oof = np.linspace(-2, 2, len(ids)).astype(np.float32)
    ImageModels(
        directory=folder,
        model_paths=models,
        isic_ids=ids,
        oof_scores=oof,
        folds=np.zeros(len(ids), np.int8),
        train_ids=[[], []],
        parity=[0.0, 0.0],
        image_size=16,
    ).save()
    model = _fit(
        LesionBoostClassifier(**FAST, images=str(setup["images"]), image_model=str(folder)), meta
    )
    names = list(model.ensemble_.feature_names_in_)
    assert "img_score" in names and "img_score_prank" in names
    features = model.transform_features(meta)
    np.testing.assert_allclose(features["img_score"].to_numpy(), oof, rtol=1e-6)
    path = save_model(model, tmp_path / "model")
    loaded = load_model(path)
    np.testing.assert_array_equal(loaded.predict_proba(meta), model.predict_proba(meta))


def test_cross_validation_with_images(setup: dict[str, object]) -> None:
    meta = setup["meta"]
    folds = patient_folds(meta, n_splits=2, seed=1)
    model = LesionBoostClassifier(
        **FAST, images=str(setup["images"]), image_model=str(setup["table"])
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        result = cross_val_oof(model, meta, folds, progress=False)
    assert np.isfinite(result.oof).all() and result.oof.shape == (meta.height,)
