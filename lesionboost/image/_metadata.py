"""An image model's input conventions, stored in its ONNX ``metadata_props``.

:data:`METADATA_KEYS` names the keys lesionboost reads (input size, layout,
normalisation, which output is the embedding or the score);
:func:`write_model_metadata` stamps them into a model exported elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from .._utils._imports import import_optional
from ..exceptions import ModelFileError

__all__ = ["METADATA_KEYS", "write_model_metadata"]

#: ``metadata_props`` keys that lesionboost reads from (and writes into) image models.
METADATA_KEYS = {
    "input_size": "lesionboost.input_size",  # side of the square input, pixels, e.g. "64"
    "layout": "lesionboost.layout",  # "NCHW" or "NHWC"
    "mean": "lesionboost.mean",  # "r,g,b" on the [0, 1] pixel scale, e.g. "0.485,0.456,0.406"
    "std": "lesionboost.std",  # "r,g,b" on the [0, 1] pixel scale
    "output": "lesionboost.output",  # name of the output used as the embedding
    "score_output": "lesionboost.score_output",  # output holding a malignancy logit, if any
}


def _parse_triple(text: str, key: str, source: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise ModelFileError(
            f"{source}: metadata {key}={text!r} must be three comma-separated numbers "
            "(r,g,b on the [0, 1] pixel scale)."
        )
    return values[0], values[1], values[2]


def _joined(values: tuple[float, float, float] | None) -> str | None:
    return None if values is None else ",".join(f"{v:.8g}" for v in values)


def _triple(value: Sequence[float] | float | None, name: str) -> tuple[float, float, float] | None:
    if value is None:
        return None
    array = np.asarray(value, dtype=np.float64).ravel()
    if array.size not in (1, 3):
        raise ValueError(
            f"{name} must be one number or three (r, g, b on the [0, 1] pixel scale), "
            f"got {value!r}."
        )
    r, g, b = (float(v) for v in np.broadcast_to(array, (3,)))
    return r, g, b


def write_model_metadata(
    model_path: str | os.PathLike[str],
    *,
    input_size: int | None = None,
    layout: Literal["NCHW", "NHWC"] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    output: str | None = None,
    score_output: str | None = None,
    out: str | os.PathLike[str] | None = None,
) -> Path:
    """Record how an image model wants its input in its ``metadata_props`` (atomically).

    Useful for models exported elsewhere (e.g. from timm), so that
    :class:`OnnxEmbedder` needs no arguments for them afterwards.

    Parameters
    ----------
    model_path : path
        The ``.onnx`` file.
    input_size, layout, mean, std, output, score_output
        Values for the keys in :data:`METADATA_KEYS`; ``None`` leaves a key as it is.
    out : path, optional
        Where to write the annotated model; default: overwrite ``model_path``.

    Returns
    -------
    pathlib.Path
        The written file.

    Examples
    --------
    >>> from lesionboost.image import OnnxEmbedder, build_builtin_embedder
    >>> model = build_builtin_embedder("model.onnx")
    >>> _ = write_model_metadata(model, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    >>> OnnxEmbedder(model).std
    (0.25, 0.25, 0.25)
    """
    from .._utils._atomic import atomic_path

    onnx = import_optional("onnx", purpose="editing ONNX model metadata")
    source = Path(model_path)
    try:
        model = onnx.load(str(source), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends
        raise ModelFileError(f"{source} is not an ONNX model ({exc}).") from exc
    if layout is not None and layout.upper() not in ("NCHW", "NHWC"):
        raise ValueError(f"layout must be 'NCHW' or 'NHWC', got {layout!r}.")
    values = {
        "input_size": None if input_size is None else str(int(input_size)),
        "layout": None if layout is None else layout.upper(),
        "mean": _joined(_triple(mean, "mean")),
        "std": _joined(_triple(std, "std")),
        "output": output,
        "score_output": score_output,
    }
    props = {p.key: p.value for p in model.metadata_props}
    props.update({METADATA_KEYS[k]: v for k, v in values.items() if v is not None})
    del model.metadata_props[:]
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    target = Path(out) if out is not None else source
    with atomic_path(target) as tmp:
        onnx.save(model, str(tmp))
    return target
