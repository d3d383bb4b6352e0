"""Images: decoding, the ONNX embedder, the built-in model, a trainer and GBDT image features."""
from ._builtin import BUILTIN_FEATURES, build_builtin_embedder, builtin_model_bytes, builtin_model_path
from ._decode import DecodeStats, decode_jpeg, iter_decoded
from ._embedder import METADATA_KEYS, OnnxEmbedder
