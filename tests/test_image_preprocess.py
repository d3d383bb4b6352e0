"""The model input built inside the ONNX graph equals the host (numpy) preparation.

The embedder ships ``uint8`` NHWC batches and prepends cast, scale, mean/std and
layout operators to the model; these tests hold that graph to the numpy
reference (:func:`~lesionboost.image._preprocess.host_prepare`), bit for bit,
for every input type and layout, and through onnxruntime's I/O binding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from _onnx_models import IR_VERSION, OPSET, TensorProto, channel_mean_model, helper, onnx
from lesionboost.image import METADATA_KEYS, OnnxEmbedder, builtin_model_bytes
from lesionboost.image._preprocess import host_prepare, with_preprocessing

ort = pytest.importorskip("onnxruntime", reason="onnxruntime runs the ONNX image models")

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
_NUMPY = {
    TensorProto.FLOAT: np.float32,
    TensorProto.FLOAT16: np.float16,
    TensorProto.UINT8: np.uint8,
}


def echo_model(
    path: Path,
    *,
    layout: str,
    dtype: int = TensorProto.FLOAT,
    size: int = 12,
    batch: int | str = "N",
    opset: int = OPSET,
    input_name: str = "image",
) -> Path:
    """A model whose output ``x`` is its input: what it was fed, as float32."""
    shape = [batch, 3, size, size] if layout == "NCHW" else [batch, size, size, 3]
    node = (
        helper.make_node("Identity", [input_name], ["x"])
        if dtype == TensorProto.FLOAT
        else helper.make_node("Cast", [input_name], ["x"], to=TensorProto.FLOAT)
    )
    graph = helper.make_graph(
        [node],
        "echo",
        [helper.make_tensor_value_info(input_name, dtype, shape)],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = IR_VERSION
    helper.set_model_props(
        model,
        {
            METADATA_KEYS["mean"]: ",".join(map(str, MEAN)),
            METADATA_KEYS["std"]: ",".join(map(str, STD)),
        },
    )
    onnx.save(model, str(path))
    return path


def _images(n: int = 5, size: int = 12, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    images[0] = 0
    images[1] = 255  # the extremes of the scale
    return images


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize(
    "dtype", [TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.UINT8], ids=["f32", "f16", "u8"]
)
def test_in_graph_input_is_the_host_input_bit_for_bit(
    tmp_path: Path, layout: str, dtype: int
) -> None:
    embedder = OnnxEmbedder(echo_model(tmp_path / "echo.onnx", layout=layout, dtype=dtype))
    raw = dtype == TensorProto.UINT8 and layout == "NHWC"
    assert embedder.preprocessing == ("none" if raw else "graph")
    assert embedder.input_dtype == _NUMPY[dtype]
    images = _images()
    fed = embedder.run_outputs(images, ["x"])[0]
    expected = host_prepare(images, embedder._spec).astype(np.float32).reshape(len(images), -1)
    np.testing.assert_array_equal(fed, expected)
    if dtype == TensorProto.FLOAT:  # and it is the normalisation the model was built for
        pixels = images.astype(np.float64) / 255.0
        normalised = (pixels - MEAN) / STD
        if layout == "NCHW":
            normalised = normalised.transpose(0, 3, 1, 2)
        np.testing.assert_allclose(fed, normalised.reshape(len(images), -1), atol=2e-6)


def test_embeddings_equal_the_host_prepared_run_of_the_untouched_model(tmp_path: Path) -> None:
    # The NCHW model with mean/std of test_image_embedder, against onnxruntime on the
    # original file fed the numpy-prepared batch (what lesionboost did before).
    metadata = {METADATA_KEYS["mean"]: "0.5,0.4,0.3", METADATA_KEYS["std"]: "0.2,0.25,0.5"}
    path = channel_mean_model(tmp_path / "m.onnx", layout="NCHW", size=16, metadata=metadata)
    embedder = OnnxEmbedder(path, providers="cpu")
    assert embedder.preprocessing == "graph"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    images = _images(9, 16, seed=3)
    host = session.run(["embedding", "logit"], {"image": embedder._prepare(images)})
    graph = embedder.run_outputs(images, ["embedding", "logit"])
    for a, b in zip(host, graph, strict=True):
        np.testing.assert_array_equal(a.reshape(len(images), -1), b)


def test_builtin_embedder_takes_the_pixels_as_they_are() -> None:
    embedder = OnnxEmbedder(providers="cpu")
    assert embedder.preprocessing == "none" and embedder.input_dtype == np.uint8
    session = ort.InferenceSession(builtin_model_bytes(), providers=["CPUExecutionProvider"])
    images = _images(6, 64, seed=1)
    (expected,) = session.run(["embedding"], {"image": images})
    np.testing.assert_array_equal(embedder.embed_images(images), expected)


def test_io_binding_gives_what_run_gives(tmp_path: Path) -> None:
    # The CUDA path binds the uint8 batch and the outputs; on the CPU the same calls work.
    embedder = OnnxEmbedder(echo_model(tmp_path / "e.onnx", layout="NCHW"), providers="cpu")
    assert embedder._io_binding is False  # only on CUDA by default
    images = _images()
    plain = embedder.run_outputs(images, ["x"])[0]
    embedder._io_binding = True
    np.testing.assert_array_equal(embedder.run_outputs(images, ["x"])[0], plain)


def test_fixed_batch_models_keep_their_batch_size(tmp_path: Path) -> None:
    fixed = OnnxEmbedder(echo_model(tmp_path / "f.onnx", layout="NCHW", batch=4))
    dynamic = OnnxEmbedder(echo_model(tmp_path / "d.onnx", layout="NCHW"))
    assert fixed.fixed_batch == 4 and fixed.preprocessing == "graph"
    images = _images(7)  # one full slice and a padded one
    np.testing.assert_array_equal(fixed.embed_images(images), dynamic.embed_images(images))


def test_new_names_never_collide_with_the_models(tmp_path: Path) -> None:
    path = echo_model(tmp_path / "c.onnx", layout="NHWC", input_name="lesionboost_pixels")
    embedder = OnnxEmbedder(path)
    assert embedder._feed_name not in ("lesionboost_pixels", "x")
    images = _images()
    expected = host_prepare(images, embedder._spec).reshape(len(images), -1)
    np.testing.assert_array_equal(embedder.embed_images(images), expected)


def test_graphs_that_cannot_take_the_nodes_are_left_alone(tmp_path: Path) -> None:
    # Opset 6 has no broadcasting Mul/Sub: the model stays as it is (numpy prepares).
    path = echo_model(tmp_path / "old.onnx", layout="NCHW", opset=6)
    model = onnx.load(str(path))
    embedder_spec = OnnxEmbedder(echo_model(tmp_path / "new.onnx", layout="NCHW"))._spec
    assert with_preprocessing(model, embedder_spec) is None
