"""The model input built inside the ONNX graph, and the numeric precisions of a session.

:class:`OnnxEmbedder` ships decoded crops as they come out of the decoders --
``uint8``, ``(N, H, W, 3)`` -- and lets the model do the rest:

* :func:`with_preprocessing` prepends ``Cast`` -> ``Mul`` -> ``Sub`` (the
  ``(pixel / 255 - mean) / std`` normalisation as one multiply-add), a
  ``Transpose`` to NCHW when the model wants it, and a ``Cast`` to float16 for
  a half-precision input, to the model's own graph. The host sends a quarter
  of the bytes a float32 batch takes and does no per-pixel work; on CUDA the
  normalisation runs on the GPU. The same graph runs on the CPU.
* :func:`host_prepare` is the same arithmetic in numpy, in the same order and
  precision (float32), kept as the reference and for models whose graph
  cannot be edited.
* :func:`to_float16` converts a model to half precision with float32 inputs
  and outputs (``precision="fp16"``).
* :func:`cuda_options` -- the CUDA provider options of each precision: the
  CUDA provider runs float32 convolutions and matrix products in TF32 unless
  ``use_tf32`` is 0, which moved the built-in embedder's outputs by up to 0.015
  against the CPU provider on an H200 (6e-4 with TF32 off).
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..exceptions import OptionalDependencyError

__all__ = [
    "PRECISIONS",
    "Precision",
    "InputSpec",
    "with_preprocessing",
    "host_prepare",
    "to_float16",
    "cuda_options",
]

Precision = Literal["fp32", "tf32", "fp16"]

#: The numeric precisions of :class:`OnnxEmbedder`. On the CPU provider "tf32" is "fp32".
PRECISIONS: tuple[str, ...] = ("fp32", "tf32", "fp16")

# Opset 7 brought numpy-style broadcasting to Mul and Sub.
_MIN_OPSET = 7


@dataclass(frozen=True)
class InputSpec:
    """How a model wants its image input, resolved from its metadata, the arguments and shape.

    ``scale`` and ``offset`` fold ``(x / 255 - mean) / std`` into ``x * scale - offset``.
    """

    name: str
    dtype: np.dtype[Any]
    layout: str  # "NCHW" or "NHWC"
    size: int
    batch: int | str | None  # the model's batch dimension: fixed, symbolic or unknown
    scale: np.ndarray  # (3,) float32
    offset: np.ndarray  # (3,) float32

    @property
    def is_raw(self) -> bool:
        """The model takes the decoded crops as they are (uint8 NHWC)."""
        return self.dtype == np.uint8 and self.layout == "NHWC"


def host_prepare(images: np.ndarray, spec: InputSpec) -> np.ndarray:
    """The model input computed in numpy: the reference for :func:`with_preprocessing`.

    Parameters
    ----------
    images : numpy.ndarray of uint8, shape (n, size, size, 3)
    spec : InputSpec

    Returns
    -------
    numpy.ndarray
        In the model's dtype and layout, C-contiguous.
    """
    if spec.dtype == np.uint8:
        batch = images
    else:
        batch = images.astype(np.float32)
        batch *= spec.scale
        batch -= spec.offset
        if spec.dtype != np.float32:
            batch = batch.astype(spec.dtype)
    if spec.layout == "NCHW":
        batch = batch.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(batch)


def _default_opset(model: Any) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return 0


def with_preprocessing(model: Any, spec: InputSpec) -> tuple[Any, str] | None:
    """Prepend the input preparation to ``model``; return it and its new ``uint8`` input's name.

    The new input is ``uint8`` of shape ``(batch, size, size, 3)``; the nodes
    end in the tensor the model's input was called, so the model's own graph is
    untouched. Returns None when nothing is needed (a ``uint8`` NHWC model) or
    when the graph cannot take the nodes (a default-domain opset below 7);
    :func:`host_prepare` then does the work.

    Parameters
    ----------
    model : onnx.ModelProto
        Edited in place.
    spec : InputSpec
        The model input to produce.
    """
    if spec.is_raw or _default_opset(model) < _MIN_OPSET:
        return None
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    taken = {t.name for t in [*graph.input, *graph.output, *graph.value_info, *graph.initializer]}
    for node in graph.node:
        taken.update(node.input)
        taken.update(node.output)

    def fresh(base: str) -> str:
        name, k = base, 0
        while name in taken:
            k += 1
            name = f"{base}_{k}"
        taken.add(name)
        return name

    pixels = fresh("lesionboost_pixels")
    nodes: list[Any] = []
    current = pixels

    def add(op: str, inputs: list[str], **attrs: Any) -> None:
        nonlocal current
        output = fresh(f"lesionboost_{op.lower()}")
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        current = output

    def constant(base: str, values: np.ndarray) -> str:
        # Constant nodes rather than initializers: IR < 4 would want initializers as inputs.
        name = fresh(base)
        tensor = numpy_helper.from_array(values, name=name)
        nodes.append(helper.make_node("Constant", [], [name], name=name, value=tensor))
        return name

    # Transpose the uint8 batch (a quarter of the bytes of a float one); the arithmetic
    # that follows is element-wise, so the values are those of host_prepare.
    channel_shape = (1, 3, 1, 1) if spec.layout == "NCHW" else (1, 1, 1, 3)
    if spec.layout == "NCHW":
        add("Transpose", [current], perm=[0, 3, 1, 2])
    if spec.dtype != np.uint8:
        scale = constant("lesionboost_scale", spec.scale.astype(np.float32).reshape(channel_shape))
        offset = constant(
            "lesionboost_offset", spec.offset.astype(np.float32).reshape(channel_shape)
        )
        add("Cast", [current], to=TensorProto.FLOAT)
        add("Mul", [current, scale])
        add("Sub", [current, offset])
        if spec.dtype == np.float16:
            add("Cast", [current], to=TensorProto.FLOAT16)
    nodes[-1].output[0] = spec.name  # the model's input, now computed
    batch = spec.batch if spec.batch is not None else "N"
    new_input = helper.make_tensor_value_info(
        pixels, TensorProto.UINT8, [batch, spec.size, spec.size, 3]
    )
    position = [i for i, entry in enumerate(graph.input) if entry.name == spec.name][0]
    graph.input.remove(graph.input[position])
    graph.input.insert(position, new_input)
    body = nodes + list(graph.node)
    del graph.node[:]
    graph.node.extend(body)
    return model, pixels


def to_float16(model: Any) -> Any:
    """``model`` in half precision, its float inputs and outputs left in float32.

    Uses onnxruntime's converter (``onnxruntime.transformers.float16``), or the
    same converter from ``onnxconverter-common`` where an onnxruntime build
    leaves its ``transformers`` tools out.

    Raises
    ------
    OptionalDependencyError
        Neither converter is installed.
    """
    convert: Any = None
    saved = list(sys.path)  # onnxruntime.transformers appends its own folder to sys.path
    try:
        for module in ("onnxruntime.transformers.float16", "onnxconverter_common.float16"):
            try:
                convert = importlib.import_module(module)
                break
            except ImportError:
                continue
    finally:
        sys.path[:] = saved
    if convert is None:
        raise OptionalDependencyError(
            "precision='fp16' converts the model with onnxruntime.transformers.float16, which "
            "this onnxruntime build leaves out (a stripped wheel?). Reinstall onnxruntime (or "
            "onnxruntime-gpu) in full, or `pip install onnxconverter-common`; or use "
            "precision='fp32'."
        )
    return convert.convert_float_to_float16(model, keep_io_types=True)


def cuda_options(precision: str) -> dict[str, str]:
    """CUDA provider options of a precision: TF32 only when asked for.

    Examples
    --------
    >>> cuda_options("fp32")
    {'use_tf32': '0'}
    >>> cuda_options("tf32")
    {'use_tf32': '1'}
    """
    return {"use_tf32": "1" if precision == "tf32" else "0"}
