"""The manifest of a model folder: the format constants (:data:`FORMAT_VERSION`,
:data:`WRITTEN_BY`, the manifest's name and size limit, the shared error wording),
SHA-256 hashing, conversion to plain JSON, the canonical bytes the manifest's own
hash covers, :func:`fingerprint` of a training frame, and reading and checking
``manifest.json`` (format, versions, schema and hash) before anything else is loaded.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import ModelFileError
from ..schema import SCHEMA_VERSION

#: Version of the directory layout and manifest; bumped on incompatible changes.
#: Version 2 keeps the image models inside the folder (``image/``); version 3 adds
#: the follow-up model to the estimator state; version 4 stores the name of its
#: score column with it. Folders of versions 1 to 3 still load.
FORMAT_VERSION = 4
_FORMAT = "lesionboost-model"
_MANIFEST = "manifest.json"
#: The marker of a model folder.
WRITTEN_BY = "lesionboost save_model"
_MAX_MANIFEST_BYTES = 64 * 2**20
_IMAGE = "image"
_MODIFIED = "the model folder was modified after it was saved (or damaged); save the model again"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _jsonable(value: Any, where: str) -> Any:
    """Plain JSON types from numpy scalars, tuples and nested dicts; refuse the rest."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(float(value)):
            raise TypeError(f"{where} is {value!r}; only finite numbers can be saved.")
        return float(value)
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(list(value))]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, f"{where}[{k!r}]") for k, v in value.items()}
    raise TypeError(
        f"{where} = {value!r} cannot be written to a model file (only numbers, text, lists "
        "and dicts can). Set it to a plain value before saving, e.g. an int random_state."
    )


def _canonical(manifest: Mapping[str, Any]) -> bytes:
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")


def fingerprint(data: Any) -> dict[str, Any]:
    """A content fingerprint of a training frame: shape, columns and a SHA-256 of the values.

    Two frames with the same columns and values (in the same row order) give
    the same fingerprint, whatever library or lesionboost version read them.

    Parameters
    ----------
    data : polars.DataFrame or pandas.DataFrame

    Returns
    -------
    dict
        ``rows``, ``columns``, ``sha256`` and, when present, ``patients`` and
        ``positives``.

    Examples
    --------
    >>> import polars as pl
    >>> fingerprint(pl.DataFrame({"a": [1.0, None]}))["rows"]
    2
    """
    import polars as pl

    from .._utils._frame import to_polars

    frame = to_polars(data, what="training_data")
    digest = hashlib.sha256()
    for name in sorted(frame.columns):
        column = frame.get_column(name)
        digest.update(f"\x00{name}\x00".encode())
        digest.update(column.is_null().to_numpy().tobytes())
        if column.dtype.is_numeric() or column.dtype == pl.Boolean:
            digest.update(column.cast(pl.Float64).fill_null(0.0).to_numpy().tobytes())
        else:
            text = column.cast(pl.String).fill_null("")
            digest.update("\x1f".join(text.to_list()).encode("utf-8"))
    out: dict[str, Any] = {
        "rows": frame.height,
        "columns": list(frame.columns),
        "sha256": digest.hexdigest(),
    }
    if "patient_id" in frame.columns:
        out["patients"] = int(frame.get_column("patient_id").n_unique())
    if "target" in frame.columns:
        out["positives"] = int(frame.get_column("target").cast(pl.Int64).sum())
    return out


def _read_listed(
    root: Path, path: Path, entry: Mapping[str, Any], *, what: str, damaged: str
) -> bytes:
    """The bytes of a file ``entry`` of the manifest lists, checked against its size and SHA-256.

    ``what`` names the file in the errors (``"member file 'x.txt'"``); ``damaged``
    ends the error of a file whose bytes differ from the recorded ones.
    """
    if not path.is_file():
        raise ModelFileError(
            f"{root}: {what} is missing. The model directory is "
            "incomplete; copy the whole directory or save the model again."
        )
    blob = path.read_bytes()
    if len(blob) != entry.get("bytes") or _sha256(blob) != entry.get("sha256"):
        raise ModelFileError(
            f"{root}: {what} does not match its SHA-256 in {_MANIFEST} "
            f"({len(blob)} bytes, expected {entry.get('bytes')}){damaged}"
        )
    return blob


def _read_manifest(root: Path) -> dict[str, Any]:
    if not root.is_dir():
        raise ModelFileError(
            f"{root} is not a lesionboost model directory (it does not exist or is a file). "
            "Pass the directory written by save_model()."
        )
    file = root / _MANIFEST
    if not file.is_file():
        raise ModelFileError(
            f"{root} has no {_MANIFEST}, so it is not a lesionboost model directory "
            "(or it is incomplete). Pass the directory written by save_model()."
        )
    if file.stat().st_size > _MAX_MANIFEST_BYTES:
        raise ModelFileError(f"{file} is larger than any lesionboost manifest; refusing to read.")
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(
            f"{file} is not valid JSON ({exc}); the file is truncated or damaged. "
            "Save the model again."
        ) from exc
    if not isinstance(manifest, dict) or manifest.get("format") != _FORMAT:
        raise ModelFileError(f"{file} is not a lesionboost model manifest.")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise ModelFileError(f"{file} has an invalid format_version {version!r}.")
    if version > FORMAT_VERSION:
        versions = manifest.get("versions")
        writer = versions.get("lesionboost", "?") if isinstance(versions, dict) else "?"
        raise ModelFileError(
            f"{root} was written in model format {version} by a newer lesionboost "
            f"({writer}); this version reads "
            f"format {FORMAT_VERSION}. Upgrade lesionboost to load it."
        )
    schema = manifest.get("schema_version")
    if schema != SCHEMA_VERSION:
        newer = isinstance(schema, int) and schema > SCHEMA_VERSION
        raise ModelFileError(
            f"{root} was fitted against SLICE-3D schema version {schema!r}, this lesionboost "
            f"uses version {SCHEMA_VERSION}. "
            + ("Upgrade lesionboost to load it." if newer else "Refit the model with this version.")
        )
    if manifest.get("manifest_sha256") != _sha256(_canonical(manifest)):
        raise ModelFileError(
            f"{file} does not match its own SHA-256: it was edited or damaged after saving. "
            "Save the model again."
        )
    return manifest
