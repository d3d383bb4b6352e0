"""Embedding precision: fp32 by default, recorded with the features, refused when it changes.

CUDA's TF32 moved the built-in embedding by up to 0.015 on an H200, so features
of another precision than the fitted ones are refused at predict time unless
an ``OnnxEmbedder`` is built with an explicit ``precision=`` (the override).
The CPU has no TF32; fp16 runs there too (slowly), and its outputs stay within
the tolerance measured below.
"""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from _crops import render_crop, write_crops
from conftest import make_tiny_metadata
from lesionboost import DataWarning, ModelFileError
from lesionboost.estimator import LesionBoostClassifier
from lesionboost.image import OnnxEmbedder, builtin_model_bytes, decode_jpeg, image_feature_frame
from lesionboost.image._embedder import _with_precision
from lesionboost.image._sources import TABLE_PRECISION_KEY, _resolve_embedder, _TableEmbedder
from lesionboost.persist import _canonical, _sha256, load_model, save_model

pytest.importorskip("onnxruntime", reason="the embedder runs on onnxruntime")

CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"

#: fp16 against fp32, the built-in embedder on the CPU provider. Measured on 4,000
#: simulator crops: max |diff| 0.017, mean 3.4e-4; on these 64 test crops: max 0.014,
#: mean 5.0e-4. The largest differences are all in the colour standard deviations (a
#: variance E[x^2] - E[x]^2 taken in half precision). Twice the measured maxima:
FP16_MAX_ABS = 0.03
FP16_MEAN_ABS = 1e-3


def _fp16_available() -> None:
    try:
        import onnxruntime.transformers.float16  # noqa: F401
    except ImportError:
        pytest.importorskip("onnxconverter_common", reason="no float16 converter installed")


@pytest.fixture(scope="module")
def crops() -> np.ndarray:
    rng = np.random.default_rng(11)
    return np.stack([decode_jpeg(render_crop(rng), 64) for _ in range(64)])


@pytest.fixture(scope="module")
def lesions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("precision")
    meta = make_tiny_metadata(n_patients=8, lesions=5, seed=6)
    images = write_crops(folder / "crops.hdf5", meta["isic_id"].to_list(), seed=2)
    return {"folder": folder, "meta": meta, "images": images}


# --------------------------------------------------------------------------- the embedder
def test_precision_defaults_to_fp32_and_is_checked() -> None:
    embedder = OnnxEmbedder(providers="cpu")
    assert embedder.precision == "fp32" and not embedder._precision_given
    assert "precision='fp32'" in repr(embedder)
    assert OnnxEmbedder(providers="cpu", precision="tf32")._precision_given
    with pytest.raises(ValueError, match="precision must be one of"):
        OnnxEmbedder(providers="cpu", precision="bf16")  # type: ignore[arg-type]


def test_cuda_runs_without_tf32_unless_asked() -> None:
    assert _with_precision([CUDA, CPU], "fp32") == [(CUDA, {"use_tf32": "0"}), CPU]
    assert _with_precision([CUDA, CPU], "fp16") == [(CUDA, {"use_tf32": "0"}), CPU]
    assert _with_precision([CUDA, CPU], "tf32") == [(CUDA, {"use_tf32": "1"}), CPU]
    given = [(CUDA, {"device_id": "1"}), CPU]
    assert _with_precision(given, "fp32") == [(CUDA, {"device_id": "1", "use_tf32": "0"}), CPU]
    assert given[0][1] == {"device_id": "1"}  # the caller's options are not edited
    assert _with_precision([(CUDA, {"use_tf32": 1})], "tf32") == [(CUDA, {"use_tf32": "1"})]
    with pytest.raises(ValueError, match="use_tf32=1 .*contradicts precision='fp32'"):
        _with_precision([(CUDA, {"use_tf32": 1})], "fp32")
    assert _with_precision([CPU], "tf32") == [CPU]


def test_tf32_is_fp32_on_the_cpu(crops: np.ndarray) -> None:
    fp32 = OnnxEmbedder(providers="cpu").embed_images(crops)
    np.testing.assert_array_equal(
        OnnxEmbedder(providers="cpu", precision="tf32").embed_images(crops), fp32
    )


def test_fp16_on_the_cpu_is_within_the_measured_tolerance(crops: np.ndarray) -> None:
    _fp16_available()
    half = OnnxEmbedder(providers="cpu", precision="fp16")
    fp32 = OnnxEmbedder(providers="cpu").embed_images(crops)
    out = half.embed_images(crops)
    assert out.dtype == np.float32 and out.shape == fp32.shape  # outputs back in float32
    diff = np.abs(out - fp32)
    assert 0 < diff.max() < FP16_MAX_ABS, diff.max()  # > 0: it really ran in half precision
    assert diff.mean() < FP16_MEAN_ABS, diff.mean()
    # the input stays the uint8 batch; the same bytes give the same model file identity
    assert half.preprocessing == "none" and half.sha256 == OnnxEmbedder(providers="cpu").sha256


def test_fp16_with_in_graph_preprocessing(tmp_path: Path, crops: np.ndarray) -> None:
    _fp16_available()
    from _onnx_models import channel_mean_model

    model = channel_mean_model(
        tmp_path / "m.onnx",
        size=64,
        metadata={"lesionboost.mean": "0.5,0.4,0.3", "lesionboost.std": "0.2,0.25,0.5"},
    )
    half = OnnxEmbedder(model, providers="cpu", precision="fp16")
    assert half.preprocessing == "graph"
    np.testing.assert_allclose(
        half.embed_images(crops), OnnxEmbedder(model).embed_images(crops), atol=2e-3
    )


# --------------------------------------------------------------------------- recorded, refused
def _fit_state(lesions: dict[str, Any], embedder: Any = None) -> tuple[pl.DataFrame, dict]:
    return image_feature_frame(lesions["meta"], lesions["images"], embedder=embedder)


def test_the_fitted_state_records_the_precision_and_predict_reuses_it(
    lesions: dict[str, Any],
) -> None:
    _fp16_available()
    meta, images = lesions["meta"], lesions["images"]
    fit, state = _fit_state(lesions, OnnxEmbedder(providers="cpu", precision="fp16"))
    assert state["embedder"]["precision"] == "fp16"
    # the built-in model named by the state runs at the recorded precision again
    assert _resolve_embedder(None, state["embedder"]).precision == "fp16"
    again, _ = image_feature_frame(meta, images, fitted_state=state)
    assert again.equals(fit)
    _, plain = _fit_state(lesions)
    assert plain["embedder"]["precision"] == "fp32"


def test_another_precision_is_refused_unless_given_explicitly(
    lesions: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    _fp16_available()
    meta, images = lesions["meta"], lesions["images"]
    _, state = _fit_state(lesions, OnnxEmbedder(providers="cpu", precision="fp16"))
    with pytest.raises(ValueError, match=r"fitted on fp16 embeddings .* runs at fp32") as info:
        image_feature_frame(meta, images, embedder=OnnxEmbedder(), fitted_state=state)
    assert "precision='fp16'" in str(info.value)  # says how to match
    with caplog.at_level(logging.WARNING, logger="lesionboost.image"):
        features, _ = image_feature_frame(
            meta, images, embedder=OnnxEmbedder(precision="fp32"), fitted_state=state
        )
    assert features.height == meta.height and "as asked" in caplog.text


def _table(lesions: dict[str, Any], name: str, precision: str | None) -> Path:
    meta = lesions["meta"]
    embeddings = OnnxEmbedder().embed(lesions["images"], meta["isic_id"].to_list())
    columns: dict[str, Any] = {"isic_id": meta["isic_id"]}
    columns.update({f"emb_{j:03d}": embeddings[:, j] for j in range(embeddings.shape[1])})
    provenance = {"lesionboost.model": "builtin", "lesionboost.model_sha256": OnnxEmbedder().sha256}
    if precision is not None:
        provenance[TABLE_PRECISION_KEY] = precision
    path = lesions["folder"] / name
    pl.DataFrame(columns).write_parquet(path, metadata=provenance)
    return path


def test_embedding_tables_carry_their_precision(lesions: dict[str, Any]) -> None:
    meta, images = lesions["meta"], lesions["images"]
    tf32 = _table(lesions, "tf32.parquet", "tf32")
    legacy = _table(lesions, "legacy.parquet", None)
    assert _TableEmbedder.from_parquet(tf32).fingerprint()["precision"] == "tf32"
    _, state = image_feature_frame(meta, images, embedder=str(tf32))
    assert state["embedder"]["precision"] == "tf32"
    # lesions the table lacks are embedded at the table's precision
    live = _TableEmbedder.from_parquet(tf32)._live_embedder(1, 1)
    assert live is not None and live.precision == "tf32"
    _, fp32_state = _fit_state(lesions)
    with pytest.raises(ValueError, match=r"table .*tf32.parquet holds tf32 embeddings"):
        image_feature_frame(meta, images, embedder=str(tf32), fitted_state=fp32_state)
    # a table written before precisions were recorded is taken as it is
    features, _ = image_feature_frame(meta, images, embedder=str(legacy), fitted_state=fp32_state)
    assert features.height == meta.height
    bad = lesions["folder"] / "bad.parquet"
    shutil.copyfile(legacy, bad)
    pl.read_parquet(bad).write_parquet(bad, metadata={TABLE_PRECISION_KEY: "int8"})
    with pytest.raises(ValueError, match="int8"):
        _TableEmbedder.from_parquet(bad)


def test_saved_models_record_the_precision_in_the_manifest(
    lesions: dict[str, Any], tmp_path: Path
) -> None:
    fast = {
        "members": ("lightgbm",),
        "n_bags": 1,
        "n_jobs": 1,
        "neg_ratio": None,
        "feature_groups": ("derived",),
        "lightgbm_params": {"n_estimators": 5, "min_data_in_leaf": 3},
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)  # leak columns dropped on purpose
        model = LesionBoostClassifier(**fast, images=str(lesions["images"])).fit(lesions["meta"])
    folder = save_model(model, tmp_path / "model")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["image"]["precision"] == "fp32"
    loaded = load_model(folder)
    assert loaded.image_state_["embedder"]["precision"] == "fp32"

    manifest["image"]["precision"] = "fp16"  # a hand edit, re-hashed
    manifest["manifest_sha256"] = _sha256(_canonical(manifest))
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="precision 'fp16' but the image-feature state 'fp32'"):
        load_model(folder)


def test_builtin_bytes_are_one_model_at_every_precision() -> None:
    # The SHA-256 names the model file; the precision is recorded beside it.
    assert OnnxEmbedder(providers="cpu", precision="tf32").sha256 == OnnxEmbedder().sha256
    assert len(builtin_model_bytes()) > 0


def test_embedder_at_precision_keeps_the_fitted_settings(lesions: dict[str, Any]) -> None:
    from lesionboost.image import embedder_at_precision

    _, state = _fit_state(lesions, OnnxEmbedder(providers="cpu", output="embedding"))
    embedder = embedder_at_precision(None, state, "tf32")
    assert embedder.precision == "tf32" and embedder.output == "embedding"
    assert embedder._precision_given  # an explicit override: predict allows it
    folder = lesions["folder"]
    pair = embedder_at_precision((None, str(folder)), state, "fp32")
    assert isinstance(pair, tuple) and pair[1] == str(folder)  # fold models kept
    with pytest.raises(ValueError, match="embeddings table .*embed the crops again"):
        embedder_at_precision(str(folder / "x.parquet"), state, "fp32")
    with pytest.raises(TypeError, match="precision= yourself"):
        embedder_at_precision(OnnxEmbedder(), state, "fp32")
    with pytest.raises(ValueError, match="int8"):
        embedder_at_precision(None, state, "int8")
