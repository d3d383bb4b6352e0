"""Images: decoding, the ONNX embedder, the built-in model, a trainer and GBDT image features.

- :class:`OnnxEmbedder` -- any image ONNX model over a SLICE-3D HDF5 file with
  onnxruntime (CUDA when present, else CPU), decoding overlapped with inference,
  the input prepared inside the graph, fp32 by default (TF32 off on CUDA);
  :func:`write_model_metadata` records a foreign model's input conventions.
- :func:`build_builtin_embedder` / :func:`builtin_model_path` -- the built-in
  label-free embedder (a fixed ONNX graph; nothing is downloaded).
- :func:`train_embedder` -- one small CNN per patient fold (PyTorch, optional),
  exported to ONNX, giving out-of-fold image scores (:class:`ImageModels`).
- :func:`image_feature_frame` / :func:`image_features` -- GBDT columns: the
  image score, embedding components and patient-relative image features;
  :func:`embedder_at_precision` -- a fitted model's embedder at another precision.
- :func:`decode_jpeg` / :func:`iter_decoded` -- JPEG bytes to RGB arrays with
  Pillow's draft mode, in decoder processes (one GIL and one HDF5 handle each)
  or, for small requests, a reader thread and a decoding thread pool.

onnxruntime, onnx and torch are imported only when a model is built, loaded
or trained, and each submodule only when one of its names is first used (a
JPEG decoder process imports ``lesionboost.image._jpeg`` alone).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._builtin import (
        BUILTIN_FEATURES,
        build_builtin_embedder,
        builtin_model_bytes,
        builtin_model_path,
    )
    from ._decode import DecodeStats, decode_jpeg, iter_decoded
    from ._embedder import OnnxEmbedder
    from ._features import check_image_model, image_feature_frame, image_features
    from ._metadata import METADATA_KEYS, write_model_metadata
    from ._sources import embedder_at_precision
    from ._train import ImageModels, train_embedder

#: public name -> the submodule that defines it
_SOURCES = {
    "OnnxEmbedder": "_embedder",
    "METADATA_KEYS": "_metadata",
    "write_model_metadata": "_metadata",
    "build_builtin_embedder": "_builtin",
    "builtin_model_path": "_builtin",
    "builtin_model_bytes": "_builtin",
    "BUILTIN_FEATURES": "_builtin",
    "train_embedder": "_train",
    "ImageModels": "_train",
    "image_feature_frame": "_features",
    "image_features": "_features",
    "embedder_at_precision": "_sources",
    "check_image_model": "_features",
    "decode_jpeg": "_decode",
    "iter_decoded": "_decode",
    "DecodeStats": "_decode",
}

__all__ = [
    "OnnxEmbedder",
    "METADATA_KEYS",
    "write_model_metadata",
    "build_builtin_embedder",
    "builtin_model_path",
    "builtin_model_bytes",
    "BUILTIN_FEATURES",
    "train_embedder",
    "ImageModels",
    "image_feature_frame",
    "image_features",
    "embedder_at_precision",
    "check_image_model",
    "decode_jpeg",
    "iter_decoded",
    "DecodeStats",
]


def __getattr__(name: str) -> Any:
    source = _SOURCES.get(name)
    if source is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{source}", __name__), name)
    globals()[name] = value  # once imported, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
