"""Model files that are safe to load: native booster files plus a JSON manifest, no pickle.

A saved model is a directory::

    model/
      manifest.json              everything that is not a booster (see below)
      members/lightgbm-0.txt     LightGBM text model, one per bag
      members/xgboost-0.ubj      XGBoost UBJSON model
      members/catboost-0.cbm     CatBoost binary model

``manifest.json`` holds the format version, the lesionboost, Python and
library versions, ``schema.SCHEMA_VERSION``, the estimator's parameters, the
featurizer state (``LesionFeaturizer.to_dict()``: feature names and category
maps), the ensemble state (classes, feature names, categorical columns and
levels, blend weights, log-odds offsets and the rank reference arrays), every
member file with its size and SHA-256, a fingerprint of the training data,
cross-validation metrics and a SHA-256 of the manifest itself.

Why this is safe: :func:`load_model` parses JSON and hands each member file's
bytes, after checking its hash, to its library's own model parser (LightGBM
text, XGBoost UBJSON, CatBoost cbm); none of them runs code. Member kinds and
model classes read from the file are looked up in fixed tables, never
imported by name, and member paths must stay inside the directory. Pickle and
joblib run arbitrary code on load, so lesionboost never writes them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import platform
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np

from ._utils._atomic import atomic_directory
from ._utils._outputs import check_folder_output, claim
from .ensemble._members import MEMBERS, library_versions
from .exceptions import ModelFileError, OutputError
from .schema import SCHEMA_VERSION

__all__ = ["save_model", "load_model", "fingerprint", "FORMAT_VERSION"]

logger = logging.getLogger(__name__)

#: Version of the directory layout and manifest; bumped on incompatible changes.
FORMAT_VERSION = 1
_FORMAT = "lesionboost-model"
_MANIFEST = "manifest.json"
#: The marker of a model folder.
WRITTEN_BY = "lesionboost save_model"
_MAX_MANIFEST_BYTES = 64 * 2**20


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

    from ._utils._frame import to_polars

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


# --------------------------------------------------------------------------- ensemble state
def _ensemble_state(model: Any, folder: Path, prefix: str) -> dict[str, Any]:
    """Write the boosters of a fitted ensemble under ``folder``; return its JSON state."""
    files = []
    (folder / "members").mkdir(exist_ok=True)
    for kind in model.members_:
        adapter = MEMBERS[kind]
        for bag, booster in enumerate(model.boosters_[kind]):
            relative = f"members/{prefix}{kind}-{bag}{adapter.suffix}"
            adapter.save(booster, folder / relative)
            blob = (folder / relative).read_bytes()
            files.append(
                {"member": kind, "bag": bag, "path": relative,
                 "bytes": len(blob), "sha256": _sha256(blob)}
            )
    names = getattr(model, "feature_names_in_", None)
    return {
        "params": _jsonable(model.get_params(deep=False), f"{type(model).__name__} parameter"),
        "classes": _jsonable(model.classes_.tolist(), "classes_"),
        "n_features_in": int(model.n_features_in_),
        "feature_names_in": None if names is None else [str(n) for n in names],
        "categorical_features": [int(i) for i in model.categorical_features_],
        "category_maps": {str(i): list(v) for i, v in model.category_maps_.items()},
        "members": list(model.members_),
        "weights": _jsonable(model.weights_, "weights_"),
        "offsets": _jsonable(model.offsets_, "offsets_"),
        "rank_knots": {
            kind: {"x": _jsonable(x, "rank knots"), "y": _jsonable(y, "rank knots")}
            for kind, (x, y) in model.rank_knots_.items()
        },
        "sampling": _jsonable(model.sampling_, "sampling_"),
        "files": files,
    }


def _safe_member_path(root: Path, relative: Any) -> Path:
    if not isinstance(relative, str) or not relative:
        raise ModelFileError(f"{root}: a member path in {_MANIFEST} is {relative!r}, not a name.")
    posix, windows = PurePosixPath(relative), PureWindowsPath(relative)
    if (
        posix.is_absolute() or windows.is_absolute() or windows.drive
        or ".." in posix.parts or ".." in windows.parts
    ):
        raise ModelFileError(
            f"{root}: member path {relative!r} in {_MANIFEST} points outside the model "
            "directory. The manifest has been tampered with; do not load this model."
        )
    path = root / relative
    resolved, base = path.resolve(), root.resolve()
    if not resolved.is_relative_to(base):  # e.g. a symbolic link leading elsewhere
        raise ModelFileError(
            f"{root}: member file {relative!r} resolves to {resolved}, outside the model "
            "directory. Do not load this model."
        )
    return path


def _read_member(root: Path, entry: Mapping[str, Any]) -> tuple[str, int, Any]:
    kind = entry.get("member")
    if not isinstance(kind, str) or kind not in MEMBERS:
        raise ModelFileError(
            f"{root}: {_MANIFEST} lists a member of unknown kind {kind!r}; this lesionboost "
            f"reads {sorted(MEMBERS)}."
        )
    adapter = MEMBERS[kind]
    path = _safe_member_path(root, entry.get("path"))
    if not path.is_file():
        raise ModelFileError(
            f"{root}: member file {entry.get('path')!r} is missing. The model directory is "
            "incomplete; copy the whole directory or save the model again."
        )
    blob = path.read_bytes()
    if len(blob) != entry.get("bytes") or _sha256(blob) != entry.get("sha256"):
        raise ModelFileError(
            f"{root}: member file {entry.get('path')!r} does not match its SHA-256 in "
            f"{_MANIFEST} ({len(blob)} bytes, expected {entry.get('bytes')}): it is truncated "
            "or was modified. Save the model again."
        )
    try:
        booster = adapter.load(blob, None)
    except Exception as exc:  # the libraries raise their own error types
        raise ModelFileError(
            f"{root}: {kind} could not parse {entry.get('path')!r}: {exc}"
        ) from exc
    bag = entry.get("bag")
    if not isinstance(bag, int):
        raise ModelFileError(f"{root}: member entry {entry.get('path')!r} has no bag number.")
    return kind, bag, booster


def _restore_ensemble(state: Mapping[str, Any], root: Path) -> Any:
    from .ensemble import GBDTEnsembleClassifier

    params = dict(state["params"])
    if isinstance(params.get("members"), list):
        params["members"] = tuple(params["members"])
    known = GBDTEnsembleClassifier().get_params(deep=False)
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ModelFileError(f"{root}: unknown ensemble parameter(s) {unknown} in {_MANIFEST}.")
    model = GBDTEnsembleClassifier(**params)
    members = [str(m) for m in state["members"]]
    boosters: dict[str, dict[int, Any]] = {m: {} for m in members}
    for entry in state["files"]:
        kind, bag, booster = _read_member(root, entry)
        if kind not in boosters:
            raise ModelFileError(f"{root}: member file for {kind!r}, which is not in members.")
        boosters[kind][bag] = booster
    for kind, bags in boosters.items():
        if not bags or sorted(bags) != list(range(len(bags))):
            raise ModelFileError(
                f"{root}: member {kind!r} is listed but its booster files are missing "
                f"(found bags {sorted(bags)}). Save the model again."
            )
    model.members_ = tuple(members)
    model.boosters_ = {k: [bags[i] for i in range(len(bags))] for k, bags in boosters.items()}
    model.classes_ = np.asarray(state["classes"])
    model.n_features_in_ = int(state["n_features_in"])
    if state["feature_names_in"] is not None:
        model.feature_names_in_ = np.asarray(state["feature_names_in"], dtype=object)
        if model.feature_names_in_.size != model.n_features_in_:
            raise ModelFileError(f"{root}: feature names and feature count disagree.")
    model.categorical_features_ = [int(i) for i in state["categorical_features"]]
    model.category_maps_ = {int(i): [str(v) for v in lv] for i, lv in
                            state["category_maps"].items()}
    model.blend_ = model.blend  # saved models store the parameters they were fitted with
    model.weights_ = {k: float(state["weights"][k]) for k in members}
    model.offsets_ = {k: float(state["offsets"][k]) for k in members}
    weights = np.array(list(model.weights_.values()))
    # The hash only catches accidental damage (anyone can recompute it): values that
    # no fit produces would silently predict NaN, so refuse them here.
    if (
        not np.all(np.isfinite(weights)) or np.any(weights <= 0)
        or abs(weights.sum() - 1.0) > 1e-6
        or not np.all(np.isfinite(list(model.offsets_.values())))
    ):
        raise ModelFileError(
            f"{root}: blend weights must be positive and sum to 1 and offsets finite; "
            f"found weights {model.weights_} and offsets {model.offsets_}. Save the model again."
        )
    model.rank_knots_ = {}
    for kind, knots in state["rank_knots"].items():
        x = np.asarray(knots["x"], dtype=np.float64)
        y = np.asarray(knots["y"], dtype=np.float64)
        if (
            x.shape != y.shape or x.ndim != 1 or x.size == 0
            or not (np.all(np.isfinite(x)) and np.all(np.isfinite(y)))
            or np.any(np.diff(x) <= 0) or np.any(np.diff(y) <= 0)
        ):
            raise ModelFileError(f"{root}: the rank reference of {kind!r} is damaged.")
        model.rank_knots_[kind] = (x, y)
    if model.blend_ == "rank" and sorted(model.rank_knots_) != sorted(members):
        raise ModelFileError(f"{root}: rank references are missing for some members.")
    model.sampling_ = dict(state["sampling"])
    if any(i < 0 or i >= model.n_features_in_ for i in model.categorical_features_):
        raise ModelFileError(f"{root}: categorical column indices are out of range.")
    return model


# --------------------------------------------------------------------------- public API
def save_model(
    model: Any,
    path: str | os.PathLike[str],
    *,
    metrics: Any = None,
    training_data: Any = None,
    overwrite: bool = False,
) -> Path:
    """Save a fitted model as a directory of native booster files and ``manifest.json``.

    The directory is written next to ``path`` under a temporary name and renamed
    into place only when complete, so a crash never leaves a half-written model.

    Parameters
    ----------
    model : LesionBoostClassifier or GBDTEnsembleClassifier
        A fitted model.
    path : path-like
        The model directory to create.
    metrics : dict or OOFResult, optional
        Cross-validation metrics to record (an :class:`~lesionboost.estimator.OOFResult`
        is stored without its per-row scores).
    training_data : polars.DataFrame or pandas.DataFrame, optional
        The frame the model was fitted on; its :func:`fingerprint` is recorded.
    overwrite : bool, default=False
        Replace an existing model directory at ``path``.

    Returns
    -------
    pathlib.Path
        The model directory.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is False, or it exists and is not a
        lesionboost model directory.

    Examples
    --------
    >>> import lesionboost as lb
    >>> X, y = lb.split_xy(lb.simulate_slice3d(30, seed=0).train)
    >>> model = lb.GBDTEnsembleClassifier(members=("lightgbm",), n_bags=1,
    ...                                   lightgbm_params={"n_estimators": 10})
    >>> model = model.fit(X.select(lb.schema.NUMERIC_COLUMNS), y)
    >>> path = save_model(model, "model")
    >>> sorted(p.name for p in path.iterdir())[:2]
    ['manifest.json', 'members']
    >>> reloaded = load_model("model")
    >>> bool((reloaded.predict_proba(X.select(lb.schema.NUMERIC_COLUMNS))
    ...       == model.predict_proba(X.select(lb.schema.NUMERIC_COLUMNS))).all())
    True
    """
    from sklearn.utils.validation import check_is_fitted

    from ._version import __version__
    from .ensemble import GBDTEnsembleClassifier
    from .estimator import LesionBoostClassifier

    if not isinstance(model, (GBDTEnsembleClassifier, LesionBoostClassifier)):
        raise TypeError(
            f"save_model saves a LesionBoostClassifier or GBDTEnsembleClassifier, got "
            f"{type(model).__name__}."
        )
    check_is_fitted(model)
    target = Path(path)
    if target.exists() and not overwrite:
        raise OutputError(
            f"{target} already exists. Pass overwrite=True to replace it, or choose "
            "another path."
        )
    check_folder_output(target, written_by=WRITTEN_BY, option="the model folder", replace=True)
    if hasattr(metrics, "to_dict"):
        metrics = metrics.to_dict()
    manifest: dict[str, Any] = {
        "format": _FORMAT,
        "format_version": FORMAT_VERSION,
        "model_class": type(model).__name__,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": {},
        "schema_version": SCHEMA_VERSION,
        "metrics": _jsonable(metrics, "metrics") if metrics is not None else None,
        "training_data": fingerprint(training_data) if training_data is not None else None,
    }
    with atomic_directory(target) as tmp:
        if isinstance(model, LesionBoostClassifier):
            ensemble = model.ensemble_
            manifest["params"] = _jsonable(model.get_params(deep=False), "parameter")
            manifest["featurizer"] = model.featurizer_.to_dict()
            manifest["estimator"] = _jsonable(model._persistent_state(), "estimator state")
        else:
            ensemble = model
            manifest["params"] = None
            manifest["featurizer"] = None
            manifest["estimator"] = None
        manifest["ensemble"] = _ensemble_state(ensemble, tmp, "")
        import polars
        import sklearn

        manifest["versions"] = {
            "lesionboost": __version__,
            "python": platform.python_version(),
            "numpy": np.__version__,
            "polars": polars.__version__,
            "scikit-learn": sklearn.__version__,
            **library_versions(ensemble.members_),
        }
        manifest["manifest_sha256"] = _sha256(_canonical(manifest))
        (tmp / _MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        claim(tmp, [entry.name for entry in tmp.iterdir()], written_by=WRITTEN_BY)
    logger.info("saved %s to %s", type(model).__name__, target)
    return target


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


def load_model(path: str | os.PathLike[str]) -> Any:
    """Load a model directory written by :func:`save_model`.

    Never unpickles and never imports a name read from the file: the model
    class and the member kinds come from fixed tables, and every member file
    must match its SHA-256 and stay inside the directory.

    Parameters
    ----------
    path : path-like
        The model directory.

    Returns
    -------
    LesionBoostClassifier or GBDTEnsembleClassifier
        The fitted model; it predicts bit-identically to the one saved.

    Raises
    ------
    ModelFileError
        The directory is missing, incomplete, tampered with, truncated, or was
        written by a newer format or schema version.

    Examples
    --------
    >>> import lesionboost as lb
    >>> X, y = lb.split_xy(lb.simulate_slice3d(30, seed=0).train)
    >>> X = X.select(lb.schema.NUMERIC_COLUMNS)
    >>> model = lb.GBDTEnsembleClassifier(members=("lightgbm",), n_bags=1,
    ...                                   lightgbm_params={"n_estimators": 10}).fit(X, y)
    >>> _ = save_model(model, "model")
    >>> type(load_model("model")).__name__
    'GBDTEnsembleClassifier'
    
    """
    root = Path(path)
    manifest = _read_manifest(root)
    model_class = manifest.get("model_class")
    if model_class not in ("GBDTEnsembleClassifier", "LesionBoostClassifier"):
        raise ModelFileError(
            f"{root}: unknown model_class {model_class!r} in {_MANIFEST}; this lesionboost "
            "loads GBDTEnsembleClassifier and LesionBoostClassifier."
        )
    try:
        ensemble = _restore_ensemble(manifest["ensemble"], root)
        if model_class == "GBDTEnsembleClassifier":
            return ensemble
        from .estimator import LesionBoostClassifier

        return LesionBoostClassifier._from_persistent_state(
            manifest["params"], manifest["estimator"], manifest["featurizer"], ensemble
        )
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelFileError(
            f"{root}: {_MANIFEST} is incomplete or inconsistent ({type(exc).__name__}: {exc}). "
            "Save the model again."
        ) from exc
