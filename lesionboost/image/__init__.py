"""Images: decoding, the ONNX embedder, the built-in model, a trainer and GBDT image features.

- :class:`OnnxEmbedder` -- any image ONNX model over a SLICE-3D HDF5 file with
  onnxruntime (CUDA when present, else CPU), decoding overlapped with inference;
  :func:`write_model_metadata` records a foreign model's input conventions.
- :func:`build_builtin_embedder` / :func:`builtin_model_path` -- the built-in
  label-free embedder (a fixed ONNX graph; nothing is downloaded).
- :func:`train_embedder` -- one small CNN per patient fold (PyTorch, optional),
  exported to ONNX, giving out-of-fold image scores (:class:`ImageModels`).
- :func:`image_feature_frame` / :func:`image_features` -- GBDT columns: the
  image score, embedding components and patient-relative image features.
- :func:`decode_jpeg` / :func:`iter_decoded` -- JPEG bytes to RGB arrays with
  Pillow's draft mode, one HDF5 reader thread and a decoding thread pool.

onnxruntime, onnx and torch are imported only when a model is built, loaded
or trained.
"""

from ._builtin import (
    BUILTIN_FEATURES,
    build_builtin_embedder,
    builtin_model_bytes,
    builtin_model_path,
)
from ._decode import DecodeStats, decode_jpeg, iter_decoded
from ._embedder import OnnxEmbedder
from ._features import image_feature_frame, image_features
from ._metadata import METADATA_KEYS, write_model_metadata
from ._train import ImageModels, train_embedder

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
    "decode_jpeg",
    "iter_decoded",
    "DecodeStats",
]
