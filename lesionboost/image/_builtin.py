"""The built-in, label-free image embedder: a small fixed ONNX graph built with ``onnx.helper``.

Nothing is downloaded or trained. From a 64 x 64 crop the graph computes
hand-designed descriptors that dermatology uses for a centred lesion
(colour, contrast with the surrounding skin, size, border sharpness,
texture, asymmetry) as statistics pooled over concentric rings:

1. **Texture** of the luminance ``L``: absolute Sobel-x, Sobel-y and Laplacian
   responses at full resolution (sampled with stride 2) and at half resolution.
2. **Colour moments**: at half resolution (32 x 32), the RGB values and their
   six products, so that ring means *and* standard deviations of the opponent
   colours ``L``, ``a = R - G`` and ``b = (R + G) / 2 - B`` follow exactly from
   small matrix products after pooling.
3. **Asymmetry**: ``|L - mirror(L)|`` for the left-right and up-down mirrors.
4. **A soft lesion mask** ``m = sigmoid(80 (L_skin - L - 0.04))``, where
   ``L_skin`` is the mean luminance of the 0.8-1.0 ring (the surrounding skin):
   pixels clearly darker than the skin count as lesion. Its ring profile encodes
   the lesion's size and shape; ``m * colour`` gives the lesion's own colour.
5. **Ring pooling**: every map is averaged over 6 rings of the radius
   normalised by half the crop side (0-0.2, ..., 0.8-1.0, the corners) and over
   the whole crop by one ``MatMul`` with a fixed weight matrix.

Cost is dominated by memory traffic rather than arithmetic, so everything but
the texture runs at half resolution and the input is the decoded ``uint8``
NHWC batch itself (no float conversion or transposition in Python). The
output ``embedding`` has the 132 columns named in :data:`BUILTIN_FEATURES`
(also stored in the model's metadata as ``lesionboost.feature_names``).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from .._utils._atomic import atomic_path
from .._utils._imports import import_optional
from ._metadata import METADATA_KEYS

__all__ = [
    "build_builtin_embedder",
    "builtin_model_path",
    "builtin_model_bytes",
    "BUILTIN_FEATURES",
]

BUILTIN_VERSION = 1
OPSET = 17
IR_VERSION = 8  # readable by onnxruntime >= 1.10

# Ring edges on the radius normalised by half the crop side; the last ring is the corners.
_RING_EDGES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0, np.inf)
_REGIONS = [f"r{k}" for k in range(len(_RING_EDGES) - 1)] + ["all"]
_OUTER = len(_RING_EDGES) - 3  # ring 0.8-1.0: the skin around a centred lesion
_WHOLE = len(_REGIONS) - 1
_COLOUR = ["L", "a", "b"]
_TEXTURE = [f"{name}{scale}" for scale in (1, 2) for name in ("gradx", "grady", "lap")]
_MAPS = _TEXTURE + ["asym_lr", "asym_ud", "mask"] + [f"mask_{c}" for c in _COLOUR]
_MASK_GAIN, _MASK_MARGIN = 80.0, 0.04

# RGB -> opponent colour (rows L, a, b), on the [0, 1] pixel scale.
_OPPONENT = np.array([[0.299, 0.587, 0.114], [1.0, -1.0, 0.0], [0.5, 0.5, -1.0]])


def _second_moment_map() -> np.ndarray:
    """``(3, 6)`` matrix: E[o_k^2] of each opponent channel from E[RR, GG, BB, RG, GB, BR]."""
    w = _OPPONENT
    return np.stack(
        [
            [
                w[k, 0] ** 2,
                w[k, 1] ** 2,
                w[k, 2] ** 2,
                2 * w[k, 0] * w[k, 1],
                2 * w[k, 1] * w[k, 2],
                2 * w[k, 2] * w[k, 0],
            ]
            for k in range(3)
        ]
    )


def _feature_names() -> list[str]:
    names = [f"{m}_{r}" for m in _MAPS for r in _REGIONS]
    names += [f"{c}_mean_{r}" for c in _COLOUR for r in _REGIONS]
    names += [f"{c}_std_{r}" for c in _COLOUR for r in _REGIONS]
    names += [f"lesion_{c}" for c in _COLOUR] + [f"contrast_{c}" for c in _COLOUR]
    return names


#: Names of the built-in embedding's columns, in order.
BUILTIN_FEATURES: list[str] = _feature_names()


def _region_weights(positions: np.ndarray, size: int) -> np.ndarray:
    """Matrix whose columns average a map over each ring (and the whole crop).

    ``positions`` are the centres of the map's rows/columns in input pixels, so
    maps of different resolutions (half size, valid convolutions) share the same
    rings. Returns ``(len(positions) ** 2, regions)``.
    """
    centre = (size - 1) / 2.0
    yy, xx = np.meshgrid(positions, positions, indexing="ij")
    radius = np.hypot(yy - centre, xx - centre).ravel() / (size / 2.0)
    columns = []
    for low, high in zip(_RING_EDGES[:-1], _RING_EDGES[1:], strict=True):
        columns.append(((radius >= low) & (radius < high)).astype(np.float64))
    columns.append(np.ones_like(radius))
    weights = np.stack(columns, axis=1)
    if (weights.sum(axis=0) == 0).any():
        raise ValueError(f"input_size {size} is too small for the built-in embedder's rings.")
    return (weights / weights.sum(axis=0, keepdims=True)).astype(np.float32)


def _build_model(size: int):  # type: ignore[no-untyped-def]
    onnx = import_optional("onnx", purpose="building the built-in image embedder")
    from onnx import TensorProto, helper, numpy_helper

    if not isinstance(size, (int, np.integer)) or size < 32 or size % 2:
        raise ValueError(
            f"input_size of the built-in embedder must be an even integer >= 32, got {size}."
        )
    half = size // 2
    init: list = []

    def const(name: str, value: object, dtype: type = np.float32) -> None:
        init.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name=name))

    sobel_x = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]) / 4.0
    laplace = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]])
    texture = np.stack([sobel_x, sobel_x.T, laplace])  # (3, 3, 3): filters on luminance
    const("w_lum", _OPPONENT[0].reshape(1, 3, 1, 1))
    const("w_texture", texture[:, None])  # (3, 1, 3, 3)
    # The same filters applied to the luminance of 0-255 RGB, folded into one RGB kernel.
    const("w_texture_rgb", texture[:, None] * (_OPPONENT[0] / 255.0)[None, :, None, None])
    const("w_opponent", _OPPONENT)
    const("w_second", _second_moment_map())
    # Map grids in input pixels: half size (2x2 means), the stride-2 valid texture
    # convolution at full size, and the valid texture convolution at half size.
    half_grid = 2.0 * np.arange(half) + 0.5
    tex1_grid = 2.0 * np.arange((size - 3) // 2 + 1) + 1.0
    tex2_grid = 2.0 * np.arange(half - 2) + 2.5
    regions = _region_weights(half_grid, size)
    const("w_regions", regions)
    const("w_regions_tex1", _region_weights(tex1_grid, size))
    const("w_regions_tex2", _region_weights(tex2_grid, size))
    const("w_outer", regions[:, _OUTER].reshape(1, 1, half, half))
    const("inv255", 1.0 / 255.0)
    const("mask_gain", _MASK_GAIN)
    const("mask_margin", _MASK_MARGIN)
    const("eps", 1e-4)
    for name, values in {
        "perm": [1, 2, 0],
        "shape_maps": [0, 0, half * half],
        "shape_flat": [0, -1],
        "c0": [0],
        "c3": [3],
        "c9": [9],
        "c11": [11],
        "c12": [12],
        "c15": [15],
        "shape_any": [0, 0, -1],
        "outer": [_OUTER],
        "outer1": [_OUTER + 1],
        "whole": [_WHOLE],
        "whole1": [_WHOLE + 1],
        "ax1": [1],
        "ax2": [2],
        "ax3": [3],
        "ax23": [2, 3],
        "rev_start": [-1],
        "rev_end": [-(2**62)],
        "rev_step": [-1],
    }.items():
        const(name, values, np.int64)

    node = helper.make_node
    nodes = [
        node("Cast", ["image"], ["pixels"], to=TensorProto.FLOAT),
        node("Transpose", ["pixels"], ["nchw"], perm=[0, 3, 1, 2]),  # 0-255 RGB
        # texture of the luminance at full size (sampled with stride 2) and at half size
        # valid convolutions: zero padding would draw a false edge around every crop
        node("Conv", ["nchw", "w_texture_rgb"], ["tex1_raw"], strides=[2, 2]),
        node("AveragePool", ["nchw"], ["rgb255"], kernel_shape=[2, 2], strides=[2, 2]),
        node("Mul", ["rgb255", "inv255"], ["rgb"]),
        node("Conv", ["rgb", "w_lum"], ["lum"]),
        node("Conv", ["lum", "w_texture"], ["tex2_raw"]),
        node("Abs", ["tex1_raw"], ["tex1"]),
        node("Abs", ["tex2_raw"], ["tex2"]),
        # colour moments at half size
        node("Mul", ["rgb", "rgb"], ["rgb_sq"]),
        node("Gather", ["rgb", "perm"], ["gbr"], axis=1),
        node("Mul", ["rgb", "gbr"], ["rgb_cross"]),  # RG, GB, BR
        # asymmetry
        node("Slice", ["lum", "rev_start", "rev_end", "ax3", "rev_step"], ["lum_lr"]),
        node("Slice", ["lum", "rev_start", "rev_end", "ax2", "rev_step"], ["lum_ud"]),
        node("Sub", ["lum", "lum_lr"], ["d_lr"]),
        node("Sub", ["lum", "lum_ud"], ["d_ud"]),
        node("Abs", ["d_lr"], ["asym_lr"]),
        node("Abs", ["d_ud"], ["asym_ud"]),
        # soft lesion mask: darker than the skin of the outer ring
        node("Mul", ["lum", "w_outer"], ["lum_outer"]),
        node("ReduceSum", ["lum_outer", "ax23"], ["skin_lum"], keepdims=1),  # (N, 1, 1, 1)
        node("Sub", ["skin_lum", "lum"], ["darker"]),
        node("Sub", ["darker", "mask_margin"], ["darker_t"]),
        node("Mul", ["darker_t", "mask_gain"], ["mask_logit"]),
        node("Sigmoid", ["mask_logit"], ["mask"]),
        node("Mul", ["mask", "rgb"], ["mask_rgb"]),
        # channels: 0-2 rgb, 3-5 rgb^2, 6-8 cross, 9-10 asymmetry, 11 mask, 12-14 mask * rgb;
        # one MatMul pools them all over the rings, two more pool the texture maps
        node(
            "Concat",
            ["rgb", "rgb_sq", "rgb_cross", "asym_lr", "asym_ud", "mask", "mask_rgb"],
            ["maps"],
            axis=1,
        ),
        node("Reshape", ["maps", "shape_maps"], ["maps_flat"]),
        node("MatMul", ["maps_flat", "w_regions"], ["pooled"]),  # (N, 15, R)
        node("Reshape", ["tex1", "shape_any"], ["tex1_flat"]),
        node("MatMul", ["tex1_flat", "w_regions_tex1"], ["p_tex1"]),  # (N, 3, R)
        node("Reshape", ["tex2", "shape_any"], ["tex2_flat"]),
        node("MatMul", ["tex2_flat", "w_regions_tex2"], ["p_tex2"]),  # (N, 3, R)
        # opponent colour means and standard deviations per ring, from the RGB moments
        node("Slice", ["pooled", "c0", "c3", "ax1"], ["p_rgb"]),
        node("Slice", ["pooled", "c3", "c9", "ax1"], ["p_second"]),
        node("Slice", ["pooled", "c9", "c12", "ax1"], ["p_asym_mask"]),
        node("Concat", ["p_tex1", "p_tex2", "p_asym_mask"], ["p_maps"], axis=1),
        node("Slice", ["pooled", "c12", "c15", "ax1"], ["p_mask_rgb"]),
        node("MatMul", ["w_opponent", "p_rgb"], ["colour_mean"]),
        node("MatMul", ["w_second", "p_second"], ["colour_sq"]),
        node("MatMul", ["w_opponent", "p_mask_rgb"], ["mask_colour"]),
        node("Mul", ["colour_mean", "colour_mean"], ["colour_mean_sq"]),
        node("Sub", ["colour_sq", "colour_mean_sq"], ["colour_var_raw"]),
        node("Relu", ["colour_var_raw"], ["colour_var"]),
        node("Sqrt", ["colour_var"], ["colour_std"]),
        # the lesion's own colour, E[m * colour] / E[m], against the skin's
        node("Slice", ["pooled", "c11", "c12", "ax1"], ["p_mask"]),
        node("Slice", ["p_mask", "whole", "whole1", "ax2"], ["mask_area"]),
        node("Add", ["mask_area", "eps"], ["mask_area_eps"]),
        node("Slice", ["mask_colour", "whole", "whole1", "ax2"], ["mask_colour_all"]),
        node("Div", ["mask_colour_all", "mask_area_eps"], ["lesion_colour"]),
        node("Slice", ["colour_mean", "outer", "outer1", "ax2"], ["skin_colour"]),
        node("Sub", ["lesion_colour", "skin_colour"], ["contrast"]),
        node("Reshape", ["p_maps", "shape_flat"], ["f_maps"]),
        node("Reshape", ["mask_colour", "shape_flat"], ["f_mask_colour"]),
        node("Reshape", ["colour_mean", "shape_flat"], ["f_mean"]),
        node("Reshape", ["colour_std", "shape_flat"], ["f_std"]),
        node("Reshape", ["lesion_colour", "shape_flat"], ["f_lesion"]),
        node("Reshape", ["contrast", "shape_flat"], ["f_contrast"]),
        node(
            "Concat",
            ["f_maps", "f_mask_colour", "f_mean", "f_std", "f_lesion", "f_contrast"],
            ["embedding"],
            axis=1,
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "lesionboost_builtin_embedder",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, ["N", size, size, 3])],
        [
            helper.make_tensor_value_info(
                "embedding", TensorProto.FLOAT, ["N", len(BUILTIN_FEATURES)]
            )
        ],
        initializer=init,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="lesionboost",
        producer_version=str(BUILTIN_VERSION),
        doc_string="lesionboost built-in label-free lesion descriptor (ring-pooled colour, "
        "texture, asymmetry and soft-mask statistics).",
    )
    model.ir_version = IR_VERSION
    helper.set_model_props(
        model,
        {
            METADATA_KEYS["input_size"]: str(size),
            METADATA_KEYS["layout"]: "NHWC",
            METADATA_KEYS["output"]: "embedding",
            "lesionboost.kind": "builtin",
            "lesionboost.version": str(BUILTIN_VERSION),
            "lesionboost.feature_names": ",".join(BUILTIN_FEATURES),
        },
    )
    onnx.checker.check_model(model, full_check=True)
    return model


@functools.lru_cache(maxsize=4)
def builtin_model_bytes(input_size: int = 64) -> bytes:
    """The serialised built-in embedder (built in memory, a few milliseconds).

    Examples
    --------
    >>> from lesionboost.image import builtin_model_bytes
    >>> builtin_model_bytes()[:2] != b""
    True
    """
    return _build_model(int(input_size)).SerializeToString()


def build_builtin_embedder(path: str | os.PathLike[str], *, input_size: int = 64) -> Path:
    """Write the built-in label-free embedder to ``path`` (atomically) and return the path.

    Parameters
    ----------
    path : str or path-like
        Output ``.onnx`` file.
    input_size : int, default=64
        Input side in pixels; the embedding has the same 132 features at any size.

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from lesionboost.image import build_builtin_embedder, OnnxEmbedder
    >>> path = build_builtin_embedder(pathlib.Path(tempfile.mkdtemp()) / "builtin.onnx")
    >>> OnnxEmbedder(path).metadata["lesionboost.kind"]
    'builtin'
    """
    target = Path(path)
    payload = builtin_model_bytes(int(input_size))
    with atomic_path(target) as tmp:
        tmp.write_bytes(payload)
    return target


def _cache_dir() -> Path:
    if os.environ.get("LESIONBOOST_CACHE"):
        return Path(os.environ["LESIONBOOST_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lesionboost"


def builtin_model_path(*, input_size: int = 64) -> Path:
    """Path of the built-in embedder in the lesionboost cache, written on first use.

    The cache folder is ``$LESIONBOOST_CACHE``, else ``$XDG_CACHE_HOME/lesionboost``,
    else ``~/.cache/lesionboost``. The file name carries the model version and
    size, and an existing file is rewritten when its bytes differ.

    Returns
    -------
    pathlib.Path
    """
    folder = _cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"builtin-embedder-v{BUILTIN_VERSION}-{int(input_size)}px.onnx"
    payload = builtin_model_bytes(int(input_size))
    if not target.exists() or target.read_bytes() != payload:
        build_builtin_embedder(target, input_size=input_size)
    return target
