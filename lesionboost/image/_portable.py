"""What a saved model folder copies so that it predicts on new crops on its own.

:func:`portable_image_model` finds, from a fitted image-feature state, the
embedding model (an ONNX file verified against its recorded SHA-256, its
bytes, or ``None`` for the built-in embedder), the external weight files of
that ONNX file and the :func:`train_embedder` fold models behind ``img_score``,
and returns them as a :class:`PortableImageModel` for ``save_model`` to copy.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from ..exceptions import ModelFileError
from ._sources import _builtin_sha256, _file_sha256, _table_model

if TYPE_CHECKING:
    from ._train import ImageModels

__all__ = ["PortableImageModel", "portable_image_model"]


@dataclass(frozen=True)
class PortableImageModel:
    """What predicting with a fitted image-feature state needs besides the state.

    Attributes
    ----------
    embedder : pathlib.Path, bytes or None
        The embedding model: an ONNX file, its bytes, or None for the built-in.
    embedder_data : tuple of (str, pathlib.Path)
        External weight files of that ONNX file: name relative to its folder, path.
    scorer : ImageModels or None
        The :func:`train_embedder` fold models behind ``img_score``.
    """

    embedder: Path | bytes | None
    embedder_data: tuple[tuple[str, Path], ...]
    scorer: ImageModels | None


def _external_data(path: Path) -> tuple[tuple[str, Path], ...]:
    """External weight files that an ONNX model names (relative to its folder)."""
    from .._utils._imports import import_optional

    onnx = import_optional("onnx", purpose="finding an ONNX model's external weight files")
    from onnx import external_data_helper as helper

    model = onnx.load(str(path), load_external_data=False)
    names = sorted(
        {
            helper.ExternalDataInfo(tensor).location
            for tensor in helper._get_all_tensors(model)
            if helper.uses_external_data(tensor)
        }
    )
    files = []
    for name in names:
        pure = PurePosixPath(name)
        if pure.is_absolute() or ".." in pure.parts or not (path.parent / name).is_file():
            raise ModelFileError(
                f"{path} keeps weights in {name!r}, which is not a file in its folder; a model "
                "folder can hold only weights stored next to the model. Save the ONNX model "
                "as one file (onnx.save(model, path, save_as_external_data=False))."
            )
        files.append((name, path.parent / name))
    return tuple(files)


def _fitted_embedder(image_model: Any, recorded: Mapping[str, Any]) -> Path | bytes | None:
    """The embedding model of a state fitted with an ONNX model (not a table), verified.

    Looks for the SHA-256 recorded at fit in the recorded model file, then in
    the files, embedders and bytes that ``image_model`` names now (a loaded
    model names the copy in its folder), then in the built-in embedder.
    """
    model, sha = recorded.get("model"), recorded.get("sha256")
    if not isinstance(sha, str):
        raise ModelFileError(
            "The image features record no SHA-256 of their image model, so it cannot be "
            "checked. Fit with image_model=<an .onnx file> or None (the built-in embedder)."
        )
    sources = list(image_model) if isinstance(image_model, (list, tuple)) else [image_model]
    paths = [Path(model)] if isinstance(model, str) and model != "builtin" else []
    for source in sources:
        if isinstance(source, (bytes, bytearray)):
            if hashlib.sha256(source).hexdigest() == sha:
                return bytes(source)
            continue
        location = getattr(source, "model_path", source)  # an OnnxEmbedder: its file
        if isinstance(location, (str, os.PathLike)) and Path(location).suffix == ".onnx":
            paths.append(Path(location))
    changed = []
    for path in paths:
        if path.is_file():
            if _file_sha256(path) == sha:
                return path.resolve()
            changed.append(str(path))
    if sha == _builtin_sha256():
        return None
    found = (
        f"{' and '.join(changed)} now has another SHA-256"
        if changed
        else "that file is not there"
        if paths
        else "it was not given as a file"
    )
    raise ModelFileError(
        f"The image features were fitted with the image model {model} (SHA-256 {sha[:12]}...), "
        f"but {found}, so it cannot be stored with the model. Put the file back, or fit again "
        "with image_model=<the .onnx file> (or None for the built-in embedder)."
    )


def portable_image_model(image_model: Any, state: Mapping[str, Any]) -> PortableImageModel:
    """Find and verify the models that a fitted image-feature state needs at predict time.

    Parameters
    ----------
    image_model : str, path, bytes, OnnxEmbedder, tuple or None
        The ``image_model`` the state was fitted with.
    state : dict
        The state returned by :func:`image_feature_frame` at fit.

    Returns
    -------
    PortableImageModel

    Raises
    ------
    ModelFileError
        A model cannot be found, or no longer has the SHA-256 recorded at fit;
        the message says what to pass instead.
    """
    recorded = state.get("embedder") or {}
    embedder: Path | bytes | None
    if "table" in recorded:
        embedder = _table_model(recorded)
    else:
        embedder = _fitted_embedder(image_model, recorded)
    data = _external_data(embedder) if isinstance(embedder, Path) else ()
    scorer = None
    if state.get("scorer"):
        from ._train import ImageModels

        scorer = ImageModels.load(state["scorer"])
        expected = state.get("scorer_sha256")
        if expected is not None and [_file_sha256(p) for p in scorer.model_paths] != list(expected):
            raise ModelFileError(
                f"The fold models in {scorer.directory} have changed since the image features "
                "were fitted on them. Put the original files back, or fit again with "
                f"image_model={str(scorer.directory)!r}."
            )
    return PortableImageModel(embedder, data, scorer)
