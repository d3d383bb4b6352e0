"""OnnxEmbedder end to end with tiny ONNX models, layouts, providers, failures and the real file."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from _crops import render_crop, write_crops
from _onnx_models import TensorProto, channel_mean_model, flat_input_model, two_input_model
from lesionboost import ModelFileError
from lesionboost.image import METADATA_KEYS, OnnxEmbedder, decode_jpeg
from lesionboost.io import ImageStore

pytest.importorskip("onnxruntime", reason="onnxruntime is needed to run ONNX image models")

MEAN = (0.5, 0.4, 0.3)
STD = (0.2, 0.25, 0.5)


def _metadata(layout: str, size: int = 16) -> dict[str, str]:
    return {
        METADATA_KEYS["input_size"]: str(size),
        METADATA_KEYS["layout"]: layout,
        METADATA_KEYS["mean"]: ",".join(map(str, MEAN)),
        METADATA_KEYS["std"]: ",".join(map(str, STD)),
        METADATA_KEYS["output"]: "embedding",
    }


@pytest.fixture(scope="module")
def crops(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    folder = tmp_path_factory.mktemp("crops")
    ids = [f"ISIC_{i:07d}" for i in range(70)]
    good = render_crop(np.random.default_rng(9))
    extra = {"ISIC_BROKEN": good[:200]}
    return write_crops(folder / "crops.hdf5", ids, seed=4, extra=extra), ids


def _expected_channel_means(store: ImageStore, ids: list[str], size: int) -> np.ndarray:
    rows = [decode_jpeg(store.get_bytes(i), size).astype(np.float64) / 255.0 for i in ids]
    pixels = np.stack(rows)
    return ((pixels - MEAN) / STD).mean(axis=(1, 2))


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
class TestLayouts:
    """The same behaviour for both tensor layouts."""

    def test_end_to_end_matches_manual_preprocessing(
        self, layout: str, tmp_path: Path, crops: tuple[Path, list[str]]
    ) -> None:
        path, ids = crops
        model = channel_mean_model(tmp_path / "m.onnx", layout=layout, metadata=_metadata(layout))
        embedder = OnnxEmbedder(model, providers="cpu", batch_size=16)
        assert (embedder.layout, embedder.input_size) == (layout, 16)
        assert embedder.mean == MEAN and embedder.std == STD
        out = embedder.embed(path, ids, progress=False)
        assert out.shape == (len(ids), 3) and out.dtype == np.float32
        expected = _expected_channel_means(ImageStore(path), ids, 16)
        np.testing.assert_allclose(out, expected, atol=1e-5)

    def test_layout_inferred_from_static_shape(self, layout: str, tmp_path: Path) -> None:
        model = channel_mean_model(tmp_path / "m.onnx", layout=layout, size=20)
        embedder = OnnxEmbedder(model, providers="cpu")
        assert (embedder.layout, embedder.input_size) == (layout, 20)
        assert embedder.mean == (0.0, 0.0, 0.0) and embedder.std == (1.0, 1.0, 1.0)
        images = np.full((3, 20, 20, 3), 51, np.uint8)
        np.testing.assert_allclose(embedder.embed_images(images), 0.2, atol=1e-6)

    def test_dynamic_size_needs_argument(self, layout: str, tmp_path: Path) -> None:
        model = channel_mean_model(tmp_path / "m.onnx", layout=layout, size="S")
        with pytest.raises(ValueError, match="input_size"):
            OnnxEmbedder(model, providers="cpu")
        embedder = OnnxEmbedder(model, providers="cpu", input_size=24, mean=0.5, std=0.5)
        assert embedder.input_size == 24 and embedder.layout == layout
        images = np.full((2, 24, 24, 3), 255, np.uint8)
        np.testing.assert_allclose(embedder.embed_images(images), 1.0, atol=1e-6)


def test_nchw_and_nhwc_models_agree(tmp_path: Path, crops: tuple[Path, list[str]]) -> None:
    path, ids = crops
    outputs = []
    for layout in ("NCHW", "NHWC"):
        model = channel_mean_model(
            tmp_path / f"{layout}.onnx", layout=layout, metadata=_metadata(layout)
        )
        outputs.append(OnnxEmbedder(model, providers="cpu").embed(path, ids[:20]))
    np.testing.assert_allclose(outputs[0], outputs[1], atol=1e-6)


def test_several_outputs_and_output_choice(tmp_path: Path, crops: tuple[Path, list[str]]) -> None:
    path, ids = crops
    model = channel_mean_model(tmp_path / "m.onnx", metadata=_metadata("NCHW"))
    embedder = OnnxEmbedder(model, providers="cpu")
    embedding, logit = embedder.embed(path, ids[:10], outputs=["embedding", "logit"])
    np.testing.assert_allclose(logit[:, 0], embedding @ np.array([1.0, -1.0, 0.5]), atol=1e-5)
    only_logit = OnnxEmbedder(model, providers="cpu", output="logit").embed(path, ids[:10])
    np.testing.assert_allclose(only_logit, logit, atol=1e-6)
    with pytest.raises(ModelFileError, match="no output 'nope'"):
        OnnxEmbedder(model, providers="cpu", output="nope")


def test_arguments_that_contradict_metadata_are_errors(tmp_path: Path) -> None:
    model = channel_mean_model(tmp_path / "m.onnx", size="S", metadata=_metadata("NCHW", 32))
    assert OnnxEmbedder(model, providers="cpu", input_size=32).input_size == 32
    with pytest.raises(ValueError, match="contradicts the model's metadata"):
        OnnxEmbedder(model, providers="cpu", input_size=64)
    with pytest.raises(ValueError, match="contradicts"):
        OnnxEmbedder(model, providers="cpu", mean=0.0)


def test_uint8_models_receive_raw_pixels(tmp_path: Path) -> None:
    model = channel_mean_model(tmp_path / "u8.onnx", layout="NHWC", size=8, dtype=TensorProto.UINT8)
    embedder = OnnxEmbedder(model, providers="cpu")
    images = np.zeros((2, 8, 8, 3), np.uint8)
    images[..., 0] = 200
    np.testing.assert_allclose(embedder.embed_images(images)[:, 0], 200.0)


def test_missing_and_corrupt_crops_give_flagged_nan_rows(
    tmp_path: Path, crops: tuple[Path, list[str]]
) -> None:
    path, ids = crops
    model = channel_mean_model(tmp_path / "m.onnx", metadata=_metadata("NCHW"))
    embedder = OnnxEmbedder(model, providers="cpu", batch_size=4)
    wanted = [ids[0], "ISIC_BROKEN", ids[1], "ISIC_NOT_THERE", ids[2]]
    out, failed = embedder.embed(ImageStore(path), wanted, return_failed=True)
    assert failed.tolist() == [False, True, False, True, False]
    assert np.isnan(out[failed]).all() and np.isfinite(out[~failed]).all()
    assert (embedder.stats.missing, embedder.stats.corrupt) == (1, 1)
    good = embedder.embed(path, [ids[0], ids[1], ids[2]])
    np.testing.assert_allclose(out[~failed], good, atol=1e-6)


def test_default_ids_are_the_whole_file_in_file_order(
    tmp_path: Path, crops: tuple[Path, list[str]]
) -> None:
    path, _ = crops
    model = channel_mean_model(tmp_path / "m.onnx", metadata=_metadata("NCHW"))
    store = ImageStore(path)
    out, failed = OnnxEmbedder(model, providers="cpu").embed(store, return_failed=True)
    assert out.shape[0] == len(store) and failed.sum() == 1  # ISIC_BROKEN


def test_cuda_request_without_cuda_warns_and_runs_on_cpu(tmp_path: Path) -> None:
    model = channel_mean_model(tmp_path / "m.onnx", size=8)
    with pytest.warns(RuntimeWarning, match="CUDA was requested"):
        embedder = OnnxEmbedder(model, providers="cuda")
    assert embedder.device == "cpu" and embedder.providers == ["CPUExecutionProvider"]


def test_auto_checks_the_session_providers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime

    # onnxruntime-gpu on a machine without a usable GPU lists CUDA but silently runs on CPU.
    monkeypatch.setattr(
        onnxruntime,
        "get_available_providers",
        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"],
    )
    model = channel_mean_model(tmp_path / "m.onnx", size=8)
    with pytest.warns(RuntimeWarning, match="could not start it"):
        embedder = OnnxEmbedder(model, providers="auto")
    assert embedder.device == "cpu"
    assert embedder.embed_images(np.zeros((1, 8, 8, 3), np.uint8)).shape == (1, 3)


def test_auto_on_cpu_build_is_silent(tmp_path: Path) -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA; the CPU-only path is not exercised")
    model = channel_mean_model(tmp_path / "m.onnx", size=8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert OnnxEmbedder(model).device == "cpu"


def test_unknown_provider_names_are_rejected(tmp_path: Path) -> None:
    model = channel_mean_model(tmp_path / "m.onnx", size=8)
    with pytest.raises(ValueError, match="not available"):
        OnnxEmbedder(model, providers=["NoSuchExecutionProvider"])
    with pytest.raises(ValueError, match="providers must be"):
        OnnxEmbedder(model, providers="tpu")


def test_clear_errors_for_bad_models(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        OnnxEmbedder(tmp_path / "absent.onnx")
    text = tmp_path / "notes.onnx"
    text.write_text("isic_id,target\n")
    with pytest.raises(ModelFileError, match="could not load .*notes.onnx"):
        OnnxEmbedder(text)
    with pytest.raises(ModelFileError, match="rank 2"):
        OnnxEmbedder(flat_input_model(tmp_path / "flat.onnx"))
    with pytest.raises(ModelFileError, match="2 inputs"):
        OnnxEmbedder(two_input_model(tmp_path / "two.onnx"))
    bad_meta = channel_mean_model(
        tmp_path / "badmeta.onnx", metadata={METADATA_KEYS["mean"]: "0.5,0.5"}
    )
    with pytest.raises(ModelFileError, match="three comma-separated"):
        OnnxEmbedder(bad_meta)
    with pytest.raises(ValueError, match="batch_size"):
        OnnxEmbedder(bad_meta, batch_size=0)


def test_images_of_the_wrong_size_are_rejected(tmp_path: Path) -> None:
    embedder = OnnxEmbedder(channel_mean_model(tmp_path / "m.onnx", size=8))
    with pytest.raises(ValueError, match=r"\(n, 8, 8, 3\)"):
        embedder.embed_images(np.zeros((1, 16, 16, 3), np.uint8))


def test_placeholder_test_images_embed_end_to_end(real_test_images: Path) -> None:
    embedder = OnnxEmbedder()  # the built-in model
    out, failed = embedder.embed(real_test_images, return_failed=True)
    assert out.shape == (3, 132) and not failed.any() and np.isfinite(out).all()
    assert embedder.stats is not None and embedder.stats.failed == 0
    # The three crops differ (different patients, skin tones): distinct embeddings.
    assert np.abs(out[0] - out[1]).max() > 1e-3 and np.abs(out[1] - out[2]).max() > 1e-3


def test_write_model_metadata_makes_arguments_unnecessary(tmp_path: Path) -> None:
    from lesionboost.image import write_model_metadata

    bare = channel_mean_model(tmp_path / "bare.onnx", size="S")  # like a timm export
    with pytest.raises(ValueError, match="input_size"):
        OnnxEmbedder(bare)
    annotated = write_model_metadata(
        bare,
        input_size=24,
        layout="nchw",
        mean=MEAN,
        std=STD,
        output="logit",
        out=tmp_path / "annotated.onnx",
    )
    embedder = OnnxEmbedder(annotated)
    assert (embedder.input_size, embedder.layout, embedder.output) == (24, "NCHW", "logit")
    assert embedder.mean == MEAN and embedder.std == STD
    write_model_metadata(annotated, input_size=32)  # in place, other keys kept
    assert OnnxEmbedder(annotated).input_size == 32 and OnnxEmbedder(annotated).mean == MEAN
    with pytest.raises(ModelFileError, match="not an ONNX model"):
        (tmp_path / "x.onnx").write_text("nope")
        write_model_metadata(tmp_path / "x.onnx", input_size=3)


def test_models_exported_with_a_fixed_batch_size_embed_any_number_of_crops(
    tmp_path: Path, crops: tuple[Path, list[str]]
) -> None:
    path, ids = crops
    fixed = channel_mean_model(tmp_path / "fixed.onnx", batch=4, metadata=_metadata("NCHW"))
    dynamic = channel_mean_model(tmp_path / "dynamic.onnx", metadata=_metadata("NCHW"))
    embedder = OnnxEmbedder(fixed, providers="cpu", batch_size=16)  # 16 != the model's 4
    assert embedder.fixed_batch == 4
    reference = OnnxEmbedder(dynamic, providers="cpu", batch_size=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the broken crop is logged, not raised
        got = embedder.embed(path, ids[:23], progress=False)  # 23 = 5 full slices + 3
    np.testing.assert_allclose(got, reference.embed(path, ids[:23], progress=False), atol=1e-6)
    assert embedder.run_outputs(np.zeros((0, 16, 16, 3), np.uint8))[0].shape == (0, 3)


@pytest.mark.parametrize("bad", [(0.5, 0.5), (0.1, 0.2, 0.3, 0.4)])
def test_mean_and_std_must_have_one_or_three_values(tmp_path: Path, bad) -> None:
    model = channel_mean_model(tmp_path / "m.onnx", metadata=_metadata("NCHW"))
    with pytest.raises(ValueError, match="mean must be one number or three"):
        OnnxEmbedder(model, providers="cpu", mean=bad)
    with pytest.raises(ValueError, match="std must be one number or three"):
        OnnxEmbedder(model, providers="cpu", std=bad)
