"""Image features for the GBDT: columns, the patient-context rule, fitted state and score lookup."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from _crops import write_crops
from _onnx_models import channel_mean_model
from lesionboost.image import ImageModels, OnnxEmbedder, image_feature_frame, image_features

pytest.importorskip("onnxruntime", reason="image features need onnxruntime to embed crops")


def _frame(patients: list[str]) -> pl.DataFrame:
    return pl.DataFrame(
        {"isic_id": [f"ISIC_{i:07d}" for i in range(len(patients))], "patient_id": patients}
    )


def _scorer(setup: dict[str, object], folder: Path, oof: np.ndarray) -> ImageModels:
    """Save and return a fold-model scorer over the setup's 30 lesions with these OOF scores."""
    scorer = ImageModels(
        directory=folder,
        model_paths=list(setup["models"]),
        isic_ids=setup["frame"]["isic_id"].to_list(),
        oof_scores=oof,
        folds=np.zeros(30, np.int8),
        train_ids=[[], []],
        parity=[0.0, 0.0],
        image_size=16,
    )
    scorer.save()
    return scorer


def _assert_same(a: pl.DataFrame, b: pl.DataFrame) -> None:
    # Same columns, ids and flags; numbers equal up to float32 rounding (BLAS kernels
    # may sum in another order for differently aligned arrays).
    assert a.columns == b.columns and a["isic_id"].equals(b["isic_id"])
    assert a["img_missing"].equals(b["img_missing"])
    numeric = [c for c in a.columns if c not in ("isic_id", "img_missing")]
    np.testing.assert_allclose(
        a.select(numeric).to_numpy(), b.select(numeric).to_numpy(), rtol=1e-5, atol=1e-6
    )


@pytest.fixture
def toy() -> tuple[pl.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    patients = ["p"] * 6 + ["q"] * 5 + ["lone"]
    # Lesions of one patient look alike (skin, camera): a per-patient centre plus noise.
    centres = {name: rng.normal(size=10) * 2 for name in ("p", "q", "lone")}
    emb = np.stack([centres[p] + rng.normal(scale=0.3, size=10) for p in patients])
    emb[3] = rng.normal(size=10) * 2  # p's odd one out
    return _frame(patients), emb


def test_columns_and_types(toy: tuple[pl.DataFrame, np.ndarray]) -> None:
    frame, emb = toy
    features, state = image_features(frame, emb, scores=np.arange(12.0), n_components=3)
    assert features.columns == [
        "isic_id",
        "img_missing",
        "img_score",
        "img_score_prank",
        "img_pc1",
        "img_pc2",
        "img_pc3",
        "img_cos_patient",
        "img_cos_prank",
    ]
    assert features["isic_id"].to_list() == frame["isic_id"].to_list()
    assert features["img_pc1"].dtype == pl.Float32 and features["img_missing"].dtype == pl.Int8
    assert state["columns"] == features.columns[1:]
    json.dumps(state)  # a plain JSON document: saved with the model, never pickled


def test_patient_relative_values(toy: tuple[pl.DataFrame, np.ndarray]) -> None:
    frame, emb = toy
    features, _ = image_features(frame, emb, scores=np.arange(12.0), n_components=2)
    cos = features["img_cos_patient"].to_numpy()
    assert cos[3] == cos[:6].max()  # the odd lesion is farthest from its patient's mean
    assert features["img_cos_prank"][3] == 1.0
    # A patient with one lesion: distance 0 and rank 0.5, as the tabular rule.
    assert cos[11] == pytest.approx(0.0, abs=1e-6) and features["img_cos_prank"][11] == 0.5
    prank = features["img_score_prank"].to_numpy()
    np.testing.assert_allclose(prank[:6], np.linspace(0, 1, 6))
    np.testing.assert_allclose(prank[6:11], np.linspace(0, 1, 5))


def test_cosine_distance_definition(toy: tuple[pl.DataFrame, np.ndarray]) -> None:
    frame, emb = toy
    features, state = image_features(frame, emb, n_components=2)
    z = (emb - np.asarray(state["center"])) / np.asarray(state["scale"])
    others = z[[6, 8, 9, 10]].mean(axis=0)  # q's lesions other than row 7
    expected = 1 - z[7] @ others / (np.linalg.norm(z[7]) * np.linalg.norm(others))
    assert features["img_cos_patient"][7] == pytest.approx(expected, rel=1e-5)


def test_patient_context_uses_only_the_frame(toy: tuple[pl.DataFrame, np.ndarray]) -> None:
    frame, emb = toy
    fitted, state = image_features(frame, emb, n_components=3)
    rng = np.random.default_rng(1)
    others = pl.DataFrame({"isic_id": ["X1", "X2", "X3"], "patient_id": ["new"] * 3})
    bigger = pl.concat([frame, others])
    more = np.vstack([emb, rng.normal(size=(3, 10))])
    again, _ = image_features(bigger, more, fitted_state=state)
    _assert_same(again.head(12), fitted)
    # Dropping lesions of patient p changes p's context, and only p's.
    subset, _ = image_features(frame[2:], emb[2:], fitted_state=state)
    assert not np.allclose(subset["img_cos_patient"][:4], fitted["img_cos_patient"][2:6])
    _assert_same(subset.tail(6), fitted.tail(6))


def test_state_is_applied_not_refitted(toy: tuple[pl.DataFrame, np.ndarray]) -> None:
    frame, emb = toy
    fitted, state = image_features(frame, emb, n_components=2)
    restored = json.loads(json.dumps(state))
    applied, _ = image_features(frame[:4], emb[:4], fitted_state=restored)
    np.testing.assert_allclose(applied["img_pc1"], fitted["img_pc1"][:4], rtol=1e-6)
    with pytest.raises(ValueError, match="fitted on 10"):
        image_features(frame, emb[:, :5], fitted_state=state)
    with pytest.raises(ValueError, match="without an image score"):
        image_features(frame, emb, scores=np.zeros(12), fitted_state=state)


def test_missing_crops_are_null_and_excluded(toy: tuple[pl.DataFrame, np.ndarray]) -> None:
    frame, emb = toy
    baseline, state = image_features(frame, emb, n_components=2)
    broken = emb.copy()
    broken[0] = np.nan
    features, _ = image_features(frame, broken, fitted_state=state)
    assert features["img_missing"].to_list()[:2] == [1, 0]
    assert features.row(0)[2:] == (None,) * (features.width - 2)
    # q's lesions do not depend on p's failed crop; p's others are recomputed without it.
    _assert_same(features[6:], baseline[6:])
    assert features["img_cos_patient"][1] is not None
    with pytest.raises(ValueError, match="No lesion of the training frame"):
        image_features(frame, np.full_like(emb, np.nan))


def test_pandas_and_polars_agree(toy: tuple[pl.DataFrame, np.ndarray]) -> None:
    pytest.importorskip("pandas")
    frame, emb = toy
    a, _ = image_features(frame, emb, n_components=2)
    b, _ = image_features(frame.to_pandas(), emb, n_components=2)
    _assert_same(a, b)


def test_bad_inputs(toy: tuple[pl.DataFrame, np.ndarray]) -> None:
    frame, emb = toy
    with pytest.raises(ValueError, match="patient_id"):
        image_features(frame.drop("patient_id"), emb)
    with pytest.raises(ValueError, match=r"\(12, d\)"):
        image_features(frame, emb[:5])
    with pytest.raises(ValueError, match="empty at row"):
        image_features(frame.with_columns(pl.lit(None, pl.String).alias("patient_id")), emb)


# ----------------------------------------------------------------------------- with files
@pytest.fixture(scope="module")
def image_setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    folder = tmp_path_factory.mktemp("features")
    patients = [f"P{i % 6}" for i in range(30)]
    frame = _frame(patients)
    ids = frame["isic_id"].to_list()
    store = write_crops(folder / "crops.hdf5", ids[:-1], seed=2)  # the last crop is missing
    models = [
        channel_mean_model(folder / f"fold{k}.onnx", size=16, logit_weights=w)
        for k, w in enumerate([(1.0, 0.0, 0.0), (0.0, 1.0, 0.0)])
    ]
    return {"folder": folder, "frame": frame, "store": store, "models": models}


def test_frame_keyed_by_isic_id_in_metadata_order(image_setup: dict[str, object]) -> None:
    frame = image_setup["frame"]
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=3)
    features, state = image_feature_frame(shuffled, image_setup["store"], n_components=4)
    assert features["isic_id"].to_list() == shuffled["isic_id"].to_list()
    missing = features.filter(pl.col("img_missing") == 1)["isic_id"].to_list()
    assert missing == ["ISIC_0000029"]
    assert state["embedder"]["model"] == "builtin" and len(state["embedder"]["sha256"]) == 64
    # Predict-time call with the fitted state reproduces the training rows.
    again, _ = image_feature_frame(shuffled, image_setup["store"], fitted_state=state)
    _assert_same(again, features)
    other = image_setup["models"][0]
    with pytest.raises(ValueError, match="differs from the one the image features were fitted"):
        image_feature_frame(shuffled, image_setup["store"], embedder=other, fitted_state=state)


def test_scores_oof_first_then_mean_of_fold_models(image_setup: dict[str, object]) -> None:
    frame = image_setup["frame"]
    folder: Path = image_setup["folder"]
    ids = frame["isic_id"].to_list()
    oof = np.full(30, np.nan, dtype=np.float32)
    oof[:20] = np.arange(20, dtype=np.float32)  # rows 0-19 were scored out of fold
    _scorer(image_setup, folder, oof)
    features, state = image_feature_frame(frame, image_setup["store"], embedder=folder)
    score = features["img_score"].to_numpy()
    np.testing.assert_allclose(score[:20], np.arange(20))
    # Rows without an OOF score: mean of the fold models' logits (mean of R and G here).
    means = OnnxEmbedder(image_setup["models"][0]).embed(image_setup["store"], ids[20:29])
    np.testing.assert_allclose(score[20:29], (means[:, 0] + means[:, 1]) / 2, rtol=1e-5)
    assert np.isnan(score[29])  # missing crop
    assert state["scorer"] == str(folder) and state["scores"] is True
    # At predict time the state finds the scorer again by its folder.
    test_rows = frame[20:29]
    predicted, _ = image_feature_frame(test_rows, image_setup["store"], fitted_state=state)
    np.testing.assert_allclose(predicted["img_score"].to_numpy(), score[20:29], rtol=1e-6)


def test_oof_scores_argument_as_array_or_mapping(image_setup: dict[str, object]) -> None:
    frame = image_setup["frame"]
    values = np.linspace(-1, 1, 30)
    by_row, _ = image_feature_frame(frame, image_setup["store"], oof_scores=values)
    mapping = dict(zip(frame["isic_id"].to_list(), values, strict=True))
    by_id, _ = image_feature_frame(frame.reverse(), image_setup["store"], oof_scores=mapping)
    for column in ("isic_id", "img_score", "img_score_prank"):
        assert by_row[column].equals(by_id.reverse()[column])
    np.testing.assert_allclose(by_row["img_score"].to_numpy()[:29], values[:29], rtol=1e-6)
    with pytest.raises(ValueError, match="oof_scores has 3 values"):
        image_feature_frame(frame, image_setup["store"], oof_scores=[1.0, 2.0, 3.0])


def test_precomputed_embeddings_from_the_embed_command(
    image_setup: dict[str, object], tmp_path: Path
) -> None:
    from lesionboost.cli import main

    frame = image_setup["frame"]
    table = tmp_path / "emb.parquet"
    assert main(["embed", "--images", str(image_setup["store"]), "--out", str(table), "-q"]) == 0
    direct, direct_state = image_feature_frame(frame, image_setup["store"], n_components=4)
    # No image file needed when the embeddings are precomputed and there is no scorer.
    cached, cached_state = image_feature_frame(frame, None, embedder=table, n_components=4)
    _assert_same(cached, direct)
    assert cached_state["embedder"]["sha256"] == direct_state["embedder"]["sha256"]
    # Fitted on the table, applied with the live built-in model: the same model, accepted.
    live, _ = image_feature_frame(frame, image_setup["store"], fitted_state=cached_state)
    _assert_same(live, direct)
    # Embeddings of another model are refused.
    other = tmp_path / "other.parquet"
    model = str(image_setup["models"][0])
    assert (
        main(
            [
                "embed",
                "--images",
                str(image_setup["store"]),
                "--model",
                model,
                "--out",
                str(other),
                "-q",
            ]
        )
        == 0
    )
    with pytest.raises(ValueError, match="differs from the one the image features were fitted"):
        image_feature_frame(frame, None, embedder=other, fitted_state=cached_state)
    with pytest.raises(ValueError, match="needs the image file"):
        image_feature_frame(frame, None)


def test_embeddings_table_checks(image_setup: dict[str, object]) -> None:
    frame = image_setup["frame"]
    table = pl.DataFrame(
        {"isic_id": ["ISIC_0000000", "ISIC_0000001"], "emb_000": [1.0, 2.0], "emb_001": [0.5, 0.1]}
    )
    features, _ = image_feature_frame(frame, None, embedder=table, n_components=1)
    assert features["img_missing"].sum() == 28  # ids absent from the table count as missing
    with pytest.raises(ValueError, match="no emb_"):
        image_feature_frame(frame, None, embedder=table.select("isic_id"))
    with pytest.raises(ValueError, match="repeats isic_ids"):
        image_feature_frame(frame, None, embedder=pl.concat([table, table]))


def test_one_argument_may_name_embeddings_and_fold_models(
    image_setup: dict[str, object], tmp_path: Path
) -> None:
    frame = image_setup["frame"]
    folder: Path = image_setup["folder"] / "pair"
    folder.mkdir(exist_ok=True)
    oof = np.arange(30, dtype=np.float32)
    _scorer(image_setup, folder, oof)
    table = tmp_path / "emb.parquet"
    from lesionboost.cli import main

    assert main(["embed", "--images", str(image_setup["store"]), "--out", str(table), "-q"]) == 0
    pair, state = image_feature_frame(frame, image_setup["store"], embedder=[table, folder])
    np.testing.assert_allclose(pair["img_score"].to_numpy()[:29], oof[:29])
    assert state["scorer"] == str(folder)
    with pytest.raises(ValueError, match="at most one embedding source"):
        image_feature_frame(frame, image_setup["store"], embedder=[table, table])
