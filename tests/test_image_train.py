"""train_embedder: ONNX export parity with PyTorch and out-of-fold discipline (needs torch)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from _crops import write_crops

pytest.importorskip(
    "torch", reason="PyTorch is not installed (pip install 'lesionboost[train-image]')"
)
pytest.importorskip(
    "onnxscript",
    reason="onnxscript is not installed (torch.onnx.export needs it; extra train-image)",
)

import onnx  # noqa: E402

from lesionboost.image import ImageModels, OnnxEmbedder, train_embedder  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.slow]


@pytest.fixture(scope="module")
def trained(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[pl.DataFrame, np.ndarray, ImageModels]:
    folder = tmp_path_factory.mktemp("train")
    n_patients, per_patient = 24, 4
    n = n_patients * per_patient
    rng = np.random.default_rng(0)
    target = (rng.random(n) < 0.2).astype(np.int64)
    target[:2] = 1
    frame = pl.DataFrame(
        {
            "isic_id": [f"ISIC_{i:07d}" for i in range(n)],
            "patient_id": [f"IP_{i // per_patient:03d}" for i in range(n)],
            "target": target,
        }
    )
    ids = frame["isic_id"].to_list()
    store = write_crops(folder / "crops.hdf5", ids[:-1], atypical=target[:-1] == 1, seed=1)
    folds = (np.arange(n) // per_patient) % 2  # two folds, whole patients
    result = train_embedder(
        frame,
        store,
        folds,
        out_dir=folder / "models",
        epochs=1,
        batch_size=32,
        width=4,
        negatives_per_positive=2,
        seed=3,
        progress=False,
    )
    return frame, folds, result


def test_export_matches_pytorch_and_carries_metadata(trained) -> None:  # type: ignore[no-untyped-def]
    _, _, result = trained
    assert len(result.model_paths) == 2
    assert all(diff < 1e-4 for diff in result.parity)
    for fold, path in enumerate(result.model_paths):
        model = onnx.load(str(path))
        props = {p.key: p.value for p in model.metadata_props}
        assert props["lesionboost.layout"] == "NCHW" and props["lesionboost.input_size"] == "64"
        assert props["lesionboost.fold"] == str(fold)
        assert props["lesionboost.score_output"] == "logit"
        embedder = OnnxEmbedder(path, providers="cpu")
        assert embedder.output == "embedding" and embedder.layout == "NCHW"
        assert len(embedder.mean) == 3 and min(embedder.std) > 0
        emb, logit = embedder.run_outputs(
            np.zeros((3, 64, 64, 3), np.uint8), ["embedding", "logit"]
        )
        assert emb.shape == (3, 16) and logit.shape == (3, 1)  # 4 * width, dynamic batch


def test_no_score_comes_from_a_model_that_saw_the_patient(trained) -> None:  # type: ignore[no-untyped-def]
    frame, folds, result = trained
    patient_of = dict(zip(frame["isic_id"], frame["patient_id"], strict=True))
    trained_on = [{patient_of[i] for i in ids} for ids in result.train_ids]
    assert all(trained_on)  # every fold model trained on someone
    for isic_id, fold in zip(result.isic_ids, result.folds, strict=True):
        assert patient_of[isic_id] not in trained_on[fold], isic_id
    np.testing.assert_array_equal(result.folds, folds)
    # The stored score of a row is exactly what its own fold's model gives it.
    ids = frame["isic_id"].to_list()
    store = result.directory.parent / "crops.hdf5"
    for fold in (0, 1):
        rows = np.flatnonzero((folds == fold) & np.isfinite(result.oof_scores))[:6]
        own = OnnxEmbedder(result.model_paths[fold]).embed(
            store, [ids[i] for i in rows], outputs=["logit"]
        )[0][:, 0]
        np.testing.assert_allclose(result.oof_scores[rows], own, rtol=1e-5, atol=1e-6)
        other = OnnxEmbedder(result.model_paths[1 - fold]).embed(
            store, [ids[i] for i in rows], outputs=["logit"]
        )[0][:, 0]
        assert not np.allclose(other, own)


def test_missing_crop_gets_no_score(trained) -> None:  # type: ignore[no-untyped-def]
    frame, _, result = trained
    assert np.isnan(result.oof_scores[-1])
    assert np.isfinite(result.oof_scores[:-1]).all()
    assert frame["isic_id"][-1] not in set().union(*map(set, result.train_ids))


def test_saved_folder_round_trips(trained) -> None:  # type: ignore[no-untyped-def]
    _, _, result = trained
    loaded = ImageModels.load(result.directory)
    np.testing.assert_array_equal(loaded.oof_scores, result.oof_scores)
    assert loaded.model_paths == result.model_paths and loaded.train_ids == result.train_ids
    manifest = json.loads((result.directory / "image-models.json").read_text())
    assert manifest["kind"] == "lesionboost-image-models" and len(manifest["history"]) == 2
    assert len(manifest["history"][0]["loss"]) == 1  # one epoch
    test_score = loaded.score(result.directory.parent / "crops.hdf5", ["ISIC_0000000"])
    assert test_score.shape == (1,) and np.isfinite(test_score).all()


def test_folds_that_split_a_patient_are_refused(trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    frame, folds, result = trained
    bad = folds.copy()
    bad[0] = 1 - bad[0]  # IP_000 now straddles both folds
    with pytest.raises(ValueError, match="more than one fold of train_embedder"):
        train_embedder(frame, result.directory.parent / "crops.hdf5", bad, out_dir=tmp_path)
    with pytest.raises(ValueError, match="0..k-1"):
        train_embedder(frame, result.directory.parent / "crops.hdf5", folds * 2, out_dir=tmp_path)
    with pytest.raises(ValueError, match="folds has 3 entries"):
        train_embedder(frame, result.directory.parent / "crops.hdf5", [0, 1, 0], out_dir=tmp_path)
