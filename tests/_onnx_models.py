"""Tiny image ONNX models built with ``onnx.helper`` (explicit opset and IR version) for tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

# Test modules importing these helpers are skipped, with the reason, without onnx.
onnx = pytest.importorskip("onnx", reason="onnx is needed to build the test ONNX models")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

OPSET = 17
IR_VERSION = 8


def channel_mean_model(
    path: Path,
    *,
    layout: str = "NCHW",
    size: int | str = 16,
    metadata: dict[str, str] | None = None,
    logit_weights: tuple[float, float, float] = (1.0, -1.0, 0.5),
    dtype: int = TensorProto.FLOAT,
    batch: int | str = "N",
) -> Path:
    """Outputs ``embedding`` = per-channel spatial mean (N, 3), ``logit`` = embedding @ w (N, 1).

    ``batch`` is the batch dimension: symbolic by default, an int for a model
    exported with a fixed batch size.
    """
    if layout == "NCHW":
        shape = [batch, 3, size, size]
        axes = [2, 3]
    else:
        shape = [batch, size, size, 3]
        axes = [1, 2]
    nodes = []
    source = "image"
    if dtype != TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", ["image"], ["image_f"], to=TensorProto.FLOAT))
        source = "image_f"
    nodes += [
        helper.make_node("ReduceMean", [source], ["pooled"], axes=axes, keepdims=0),
        helper.make_node("Identity", ["pooled"], ["embedding"]),
        helper.make_node("MatMul", ["pooled", "w"], ["logit"]),
    ]
    weights = numpy_helper.from_array(np.array(logit_weights, np.float32).reshape(3, 1), "w")
    graph = helper.make_graph(
        nodes,
        "tiny_channel_mean",
        [helper.make_tensor_value_info("image", dtype, shape)],
        [
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [batch, 3]),
            helper.make_tensor_value_info("logit", TensorProto.FLOAT, [batch, 1]),
        ],
        initializer=[weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    if metadata:
        helper.set_model_props(model, metadata)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def flat_input_model(path: Path) -> Path:
    """A model whose input has rank 2 (not an image model)."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "rank2",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 12])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 12])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.save(model, str(path))
    return path


def two_input_model(path: Path) -> Path:
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["y"])],
        "two_inputs",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 3, 8, 8]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 3, 8, 8]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 8, 8])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.save(model, str(path))
    return path
