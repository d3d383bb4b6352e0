"""Entry points that join by ``isic_id`` refuse repeated or empty ids, before any work.

Image features are joined to the lesions by ``isic_id``: a repeated id used to add
rows (51 lesions in, 53 scores out) and shift every later score. The tabular model
never joins by id, so there a repeated id keeps one score per row.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import polars as pl
import pytest

from _crops import write_crops
from conftest import make_tiny_metadata
from lesionboost import DataWarning, SchemaError
from lesionboost.estimator import LesionBoostClassifier
from lesionboost.image import image_feature_frame

pytest.importorskip("onnxruntime", reason="image features need onnxruntime")

FAST = {
    "members": ("lightgbm",),
    "n_bags": 1,
    "n_jobs": 1,
    "neg_ratio": None,
    "feature_groups": ("derived",),
    "lightgbm_params": {"n_estimators": 10, "min_data_in_leaf": 3},
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("ids")
    meta = make_tiny_metadata(n_patients=10, lesions=5, seed=3)
    images = write_crops(folder / "crops.hdf5", meta["isic_id"].to_list(), seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)  # leak columns dropped on purpose
        model = LesionBoostClassifier(**FAST, images=str(images)).fit(meta)
        tabular = LesionBoostClassifier(**FAST).fit(meta)
    # 51 rows: the frame plus a second copy of its 4th lesion; then another repeat.
    repeated = pl.concat([meta, meta[3:4]])
    return {
        "meta": meta,
        "images": images,
        "model": model,
        "tabular": tabular,
        "repeated": repeated,
        "folder": folder,
    }


def _absent(setup: dict[str, Any]) -> str:
    """An image file that does not exist: reaching it would raise another error."""
    return str(setup["folder"] / "absent.hdf5")


def test_image_feature_frame_refuses_repeated_ids_before_any_work(
    setup: dict[str, Any],
) -> None:
    repeated = pl.concat([setup["repeated"], setup["meta"][7:8]])
    with pytest.raises(
        SchemaError,
        match=r"2 id\(s\) appear more than once \(4 rows\): "
        r"'ISIC_0000003', 'ISIC_0000007'.*unique",
    ):
        image_feature_frame(repeated, _absent(setup), embedder=str(setup["folder"] / "x.onnx"))


@pytest.mark.parametrize(
    "method", ["predict_proba", "predict", "decision_function", "explain", "transform_features"]
)
def test_model_with_images_refuses_repeated_ids_at_predict_before_any_work(
    setup: dict[str, Any], method: str
) -> None:
    model = setup["model"]
    rows = setup["repeated"].drop("target")
    assert rows.height == 51
    model.set_params(images=_absent(setup))
    try:
        with pytest.raises(SchemaError, match=r"LesionBoostClassifier\.predict.*'ISIC_0000003'"):
            getattr(model, method)(rows)
    finally:
        model.set_params(images=str(setup["images"]))


def test_model_with_images_refuses_repeated_ids_at_fit_before_any_work(
    setup: dict[str, Any],
) -> None:
    model = LesionBoostClassifier(**FAST, images=_absent(setup))
    with pytest.raises(SchemaError, match=r"LesionBoostClassifier\.fit.*'ISIC_0000003'"):
        model.fit(setup["repeated"])
    assert not hasattr(model, "ensemble_")


def test_empty_ids_are_refused_with_images(setup: dict[str, Any]) -> None:
    rows = setup["meta"].with_columns(
        pl.when(pl.int_range(pl.len()) == 5)
        .then(None)
        .otherwise(pl.col("isic_id"))
        .alias("isic_id")
    )
    with pytest.raises(SchemaError, match=r"'isic_id' is empty at row\(s\) \[5\]"):
        setup["model"].predict_proba(rows)
    with pytest.raises(SchemaError, match="need an 'isic_id' column"):
        setup["model"].predict_proba(rows.drop("isic_id"))


def test_unique_ids_give_one_score_per_row(setup: dict[str, Any]) -> None:
    rows = setup["meta"]
    scores = setup["model"].predict_proba(rows)
    assert scores.shape == (rows.height, 2)
    explained = setup["model"].explain(rows)
    assert explained["isic_id"].to_list() == rows["isic_id"].to_list()


def test_tabular_model_keeps_one_score_per_row_for_repeated_ids(setup: dict[str, Any]) -> None:
    # No join by id: rows keep their positions, so a repeat (e.g. a bootstrap sample) is fine.
    rows = setup["repeated"]
    scores = setup["tabular"].predict_proba(rows)[:, 1]
    assert scores.shape == (51,)
    assert np.isfinite(scores).all()


def test_the_check_does_not_depend_on_the_id_column_type(setup: dict[str, Any]) -> None:
    rows = setup["repeated"].with_columns(pl.col("isic_id").cast(pl.Categorical))
    with pytest.raises(SchemaError, match="appear more than once"):
        image_feature_frame(rows, _absent(setup))
