"""Model files that are safe to load: native booster files plus a JSON manifest, no pickle.

A saved model is a directory::

    model/
      manifest.json              everything that is not a booster (see below)
      members/lightgbm-0.txt     LightGBM text model, one per bag
      members/xgboost-0.ubj      XGBoost UBJSON model
      members/catboost-0.cbm     CatBoost binary model
      image/embedder/<name>.onnx the ONNX embedder of a model with image features
      image/scorer/              the train_embedder() fold models, their JSON and OOF scores

``manifest.json`` holds the format version, the lesionboost, Python and
library versions, ``schema.SCHEMA_VERSION``, the estimator's parameters, the
featurizer state (``LesionFeaturizer.to_dict()``: feature names and category
maps), the ensemble state (classes, feature names, categorical columns and
levels, blend weights, log-odds offsets and the rank reference arrays), every
member file with its size and SHA-256, a fingerprint of the training data,
cross-validation metrics and a SHA-256 of the manifest itself.

A model with image features stands alone: everything its predictions need
besides the new crops -- the ONNX embedder (none for the built-in one; for a
model fitted on a ``lesionboost embed`` table, the model that made the table),
the fold models of a ``train_embedder()`` scorer and the fitted image state --
lies under ``image/``, each file listed in the manifest's ``image`` section
with its size and SHA-256, and :func:`load_model` points the estimator's
``image_model`` at those copies. The folder can be moved or copied to another
machine; the paths it was trained from are not needed.

:func:`load_model` checks what it reads before returning a model, so that a
modified folder fails at load, never inside a prediction: hashes of every
listed file (and no unlisted file under ``image/``), category levels unique
and in the sorted order fit writes (a level's code is its position), known
categorical columns, feature lists that agree between the featurizer, the
ensemble and every booster file, and image state shapes that agree with the
featurizer's image columns.

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
import shutil
import warnings
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np

from ._utils._atomic import atomic_directory
from ._utils._outputs import check_folder_output, claim
from .ensemble._members import MEMBERS, library_versions
from .exceptions import DataWarning, ModelFileError, OutputError
from .schema import CATEGORICAL_COLUMNS, SCHEMA_VERSION

__all__ = ["save_model", "load_model", "fingerprint", "FORMAT_VERSION"]

logger = logging.getLogger(__name__)

#: Version of the directory layout and manifest; bumped on incompatible changes.
#: Version 2 keeps the image models inside the folder (``image/``); version 1
#: folders still load.
FORMAT_VERSION = 2
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
                {
                    "member": kind,
                    "bag": bag,
                    "path": relative,
                    "bytes": len(blob),
                    "sha256": _sha256(blob),
                }
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
        posix.is_absolute()
        or windows.is_absolute()
        or windows.drive
        or ".." in posix.parts
        or ".." in windows.parts
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


def _check_levels(root: Path, where: str, levels: Any) -> list[str]:
    """Category levels as fit writes them: unique text, in sorted order (code = position)."""
    if not isinstance(levels, list) or not all(isinstance(v, str) for v in levels):
        raise ModelFileError(
            f"{root}: {where} in {_MANIFEST} must be a list of text levels, got "
            f"{str(levels)[:80]}; {_MODIFIED}."
        )
    seen: set[str] = set()
    for level in levels:
        if level in seen:
            raise ModelFileError(
                f"{root}: {where} in {_MANIFEST} lists the level {level!r} twice; {_MODIFIED}."
            )
        seen.add(level)
    if levels != sorted(levels):
        raise ModelFileError(
            f"{root}: the levels of {where} in {_MANIFEST} are not in the sorted order that "
            f"fit writes (a level's code is its position, so reordered levels would encode "
            f"every lesion differently); {_MODIFIED}."
        )
    return list(levels)


def _booster_width(kind: str, booster: Any) -> int | None:
    """Number of input features a loaded booster expects (None when it cannot tell)."""
    try:
        if kind == "lightgbm":
            return int(booster.num_feature())
        if kind == "xgboost":
            return int(booster.num_features())
        if kind == "catboost":
            return len(booster.feature_names_)
    except Exception:  # noqa: BLE001 - a library without the accessor: nothing to compare
        return None
    return None


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
        if bag in boosters[kind]:
            raise ModelFileError(
                f"{root}: {_MANIFEST} lists bag {bag} of {kind!r} twice ({entry.get('path')!r}); "
                f"{_MODIFIED}."
            )
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
            raise ModelFileError(
                f"{root}: the ensemble's feature_names_in and n_features_in in {_MANIFEST} "
                f"disagree; {_MODIFIED}."
            )
    for kind, loaded in model.boosters_.items():
        for bag, booster in enumerate(loaded):
            width = _booster_width(kind, booster)
            if width is not None and width != model.n_features_in_:
                raise ModelFileError(
                    f"{root}: booster {kind!r} bag {bag} takes {width} features but "
                    f"{_MANIFEST} lists {model.n_features_in_} (n_features_in); {_MODIFIED}."
                )
    categorical = state["categorical_features"]
    if (
        not isinstance(categorical, list)
        or not all(isinstance(i, int) and not isinstance(i, bool) for i in categorical)
        or categorical != sorted(set(categorical))
    ):
        raise ModelFileError(
            f"{root}: categorical_features in {_MANIFEST} must be sorted distinct column "
            f"indices, got {str(categorical)[:80]}; {_MODIFIED}."
        )
    model.categorical_features_ = list(categorical)
    maps = state["category_maps"]
    if not isinstance(maps, dict):
        raise ModelFileError(f"{root}: category_maps in {_MANIFEST} is not a mapping; {_MODIFIED}.")
    model.category_maps_ = {}
    for key, levels in maps.items():
        if not (key.isdigit() and int(key) in model.categorical_features_):
            raise ModelFileError(
                f"{root}: category_maps in {_MANIFEST} has levels for column {key!r}, which is "
                f"not one of the categorical columns {model.categorical_features_}; {_MODIFIED}."
            )
        model.category_maps_[int(key)] = _check_levels(root, f"category_maps[{key!r}]", levels)
    model.blend_ = model.blend  # saved models store the parameters they were fitted with
    model.weights_ = {k: float(state["weights"][k]) for k in members}
    model.offsets_ = {k: float(state["offsets"][k]) for k in members}
    weights = np.array(list(model.weights_.values()))
    # The hash only catches accidental damage (anyone can recompute it): values that
    # no fit produces would silently predict NaN, so refuse them here.
    if (
        not np.all(np.isfinite(weights))
        or np.any(weights <= 0)
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
            x.shape != y.shape
            or x.ndim != 1
            or x.size == 0
            or not (np.all(np.isfinite(x)) and np.all(np.isfinite(y)))
            or np.any(np.diff(x) <= 0)
            or np.any(np.diff(y) <= 0)
        ):
            raise ModelFileError(f"{root}: the rank reference of {kind!r} is damaged.")
        model.rank_knots_[kind] = (x, y)
    if model.blend_ == "rank" and sorted(model.rank_knots_) != sorted(members):
        raise ModelFileError(f"{root}: rank references are missing for some members.")
    model.sampling_ = dict(state["sampling"])
    if any(i < 0 or i >= model.n_features_in_ for i in model.categorical_features_):
        raise ModelFileError(f"{root}: categorical column indices are out of range.")
    return model


# --------------------------------------------------------------------------- estimator state
def _check_estimator_state(featurizer: Any, state: Any, ensemble: Any, root: Path) -> None:
    """Refuse a featurizer/estimator state that disagrees with itself or with the ensemble."""
    if not isinstance(featurizer, dict) or not isinstance(state, dict):
        raise ModelFileError(
            f"{root}: the featurizer or estimator state in {_MANIFEST} is not a mapping; "
            f"{_MODIFIED}."
        )
    maps = featurizer.get("category_maps_")
    if not isinstance(maps, dict):
        raise ModelFileError(
            f"{root}: featurizer category_maps_ in {_MANIFEST} is not a mapping; {_MODIFIED}."
        )
    unknown = sorted(set(maps) - set(CATEGORICAL_COLUMNS))
    missing = sorted(set(CATEGORICAL_COLUMNS) - set(maps))
    if unknown or missing:
        raise ModelFileError(
            f"{root}: featurizer category_maps_ in {_MANIFEST} has levels for unknown column(s) "
            f"{unknown} and none for {missing} (expected exactly {list(CATEGORICAL_COLUMNS)}); "
            f"{_MODIFIED}."
        )
    for name, levels in maps.items():
        _check_levels(root, f"featurizer category_maps_[{name!r}]", levels)
    names = featurizer.get("feature_names_out_")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ModelFileError(
            f"{root}: featurizer feature_names_out_ in {_MANIFEST} is not a list of names; "
            f"{_MODIFIED}."
        )
    if len(set(names)) != len(names):
        raise ModelFileError(
            f"{root}: featurizer feature_names_out_ in {_MANIFEST} repeats a name; {_MODIFIED}."
        )
    if len(names) != ensemble.n_features_in_:
        raise ModelFileError(
            f"{root}: the featurizer writes {len(names)} features but the ensemble and its "
            f"booster files take {ensemble.n_features_in_}; {_MODIFIED}."
        )
    expected_names = getattr(ensemble, "feature_names_in_", None)
    if expected_names is not None and [str(n) for n in expected_names] != names:
        differing = [a for a, b in zip(names, expected_names, strict=True) if a != str(b)]
        raise ModelFileError(
            f"{root}: the featurizer's feature names differ from the ensemble's (first "
            f"differences: {differing[:5]}); {_MODIFIED}."
        )
    categorical = sorted(names.index(c) for c in CATEGORICAL_COLUMNS if c in names)
    if categorical != list(ensemble.categorical_features_):
        raise ModelFileError(
            f"{root}: the ensemble's categorical columns {ensemble.categorical_features_} are "
            f"not the featurizer's categorical codes (columns {categorical}); {_MODIFIED}."
        )
    inputs = state.get("feature_names_in")
    if not isinstance(inputs, list) or not all(isinstance(n, str) for n in inputs):
        raise ModelFileError(
            f"{root}: estimator feature_names_in in {_MANIFEST} is not a list of names; "
            f"{_MODIFIED}."
        )
    params = featurizer.get("params")
    extra = params.get("extra_numeric") if isinstance(params, dict) else None
    image_state = state.get("image_state")
    columns = [] if image_state is None else _check_image_state(image_state, root)
    if extra != columns:
        raise ModelFileError(
            f"{root}: the featurizer's extra columns {extra} are not the image feature "
            f"columns {columns} of the image state in {_MANIFEST}; {_MODIFIED}."
        )


def _check_image_state(state: Any, root: Path) -> list[str]:
    """Shapes of a fitted image-feature state (standardisation, PCA); its column names."""
    where = f"{root}: the image-feature state in {_MANIFEST}"
    if not isinstance(state, dict):
        raise ModelFileError(f"{where} is not a mapping; {_MODIFIED}.")
    try:
        dim = state["embedding_dim"]
        center = np.asarray(state["center"], dtype=np.float64)
        scale = np.asarray(state["scale"], dtype=np.float64)
        components = np.asarray(state["components"], dtype=np.float64)
        columns = state["columns"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{where} is incomplete ({exc!r}); {_MODIFIED}.") from exc
    if (
        not isinstance(dim, int)
        or dim < 1
        or center.shape != (dim,)
        or scale.shape != (dim,)
        or not (np.isfinite(center).all() and np.isfinite(scale).all() and (scale > 0).all())
        or (components.size and (components.ndim != 2 or components.shape[1] != dim))
        or not np.isfinite(components).all()
    ):
        raise ModelFileError(
            f"{where} has centre, scale or components that do not fit an embedding of "
            f"{dim!r} columns; {_MODIFIED}."
        )
    k = components.shape[0] if components.size else 0
    expected = ["img_missing"]
    expected += ["img_score", "img_score_prank"] if state.get("scores") else []
    expected += [f"img_pc{j + 1}" for j in range(k)] + ["img_cos_patient", "img_cos_prank"]
    if columns != expected:
        raise ModelFileError(
            f"{where} lists the columns {columns} but its components give {expected}; {_MODIFIED}."
        )
    return list(columns)


# --------------------------------------------------------------------------- image models
def _image_model_param(section: Mapping[str, Any], root: Path | None) -> Any:
    """``image_model`` naming the folder's image files: None, one path, or [embedder, scorer].

    Paths are relative to the folder in the manifest (``root=None``) and
    absolute inside ``root`` once loaded.
    """
    embedder = None if section["embedder"] == "builtin" else section["embedder"]
    parts = [
        p if root is None else str(root / p) for p in (embedder, section["scorer"]) if p is not None
    ]
    return None if not parts else parts[0] if len(parts) == 1 else parts


def _write_image_files(model: Any, folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Copy what predict needs under ``folder/image``: the manifest section and saved state.

    Raises :class:`ModelFileError` (before anything is written) when a model the
    image features were fitted with cannot be found or no longer matches.
    """
    from .image import ImageModels
    from .image._features import portable_image_model

    fitted = model.image_state_
    try:
        plan = portable_image_model(model.image_model, fitted)
    except ModelFileError as exc:
        raise ModelFileError(
            f"save_model cannot store the image model that new crops need, so the model folder "
            f"would not stand alone: {exc}"
        ) from exc
    image = folder / _IMAGE
    image.mkdir()
    embedder = "builtin"
    if plan.embedder is not None:
        (image / "embedder").mkdir()
        name = "embedder.onnx" if isinstance(plan.embedder, bytes) else plan.embedder.name
        embedder = f"{_IMAGE}/embedder/{name}"
        if isinstance(plan.embedder, bytes):
            (folder / embedder).write_bytes(plan.embedder)
        else:
            shutil.copyfile(plan.embedder, folder / embedder)
        for relative, source in plan.embedder_data:
            (image / "embedder" / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, image / "embedder" / relative)
    scorer = None
    if plan.scorer is not None:
        source_models = plan.scorer
        target = image / "scorer"
        target.mkdir()
        paths = [target / f"fold-{k}.onnx" for k in range(len(source_models.model_paths))]
        for origin, copy in zip(source_models.model_paths, paths, strict=True):
            shutil.copyfile(origin, copy)
        ImageModels(
            directory=target,
            model_paths=paths,
            isic_ids=source_models.isic_ids,
            oof_scores=source_models.oof_scores,
            folds=source_models.folds,
            train_ids=source_models.train_ids,
            parity=source_models.parity,
            history=source_models.history,
            image_size=source_models.image_size,
        ).save()
        scorer = f"{_IMAGE}/scorer"
    files: list[dict[str, Any]] = []
    if not any(image.iterdir()):  # the built-in embedder and no scorer: nothing to hold
        image.rmdir()
    for path in sorted(p for p in folder.glob(f"{_IMAGE}/**/*") if p.is_file()):
        blob = path.read_bytes()
        files.append(
            {
                "path": path.relative_to(folder).as_posix(),
                "bytes": len(blob),
                "sha256": _sha256(blob),
            }
        )
    recorded = dict(fitted.get("embedder") or {})
    if embedder != "builtin":
        copied = next(f["sha256"] for f in files if f["path"] == embedder)
        if copied != recorded.get("sha256"):  # the file changed while it was being copied
            raise ModelFileError(
                f"save_model: the image model {plan.embedder!r:.80} changed while it was copied "
                f"(SHA-256 {copied[:12]}..., fitted with {str(recorded.get('sha256'))[:12]}...). "
                "Save the model again."
            )
    section = {"embedder": embedder, "scorer": scorer, "files": files}
    # The numeric precision of the embeddings the model was fitted on ("fp32", "tf32",
    # "fp16"; None before it was recorded): predict embeds new crops at it.
    section["precision"] = recorded.get("precision")
    state = dict(fitted)
    recorded.pop("table", None)
    recorded["model"] = embedder
    state["embedder"] = recorded
    state["scorer"] = scorer
    return section, state


def _check_image_files(section: Any, root: Path) -> dict[str, dict[str, Any]]:
    """Every file of the ``image`` section present with its hash, and no unlisted one."""
    entries = section.get("files") if isinstance(section, dict) else None
    if not isinstance(entries, list):
        raise ModelFileError(
            f"{root}: the image section of {_MANIFEST} lists no files; {_MODIFIED}."
        )
    files: dict[str, dict[str, Any]] = {}
    for entry in entries:
        relative = entry.get("path") if isinstance(entry, dict) else None
        path = _safe_member_path(root, relative)
        assert isinstance(relative, str) and isinstance(entry, dict)  # checked just above
        if not relative.startswith(f"{_IMAGE}/") or relative in files:
            raise ModelFileError(
                f"{root}: image file {relative!r} in {_MANIFEST} is listed twice or lies outside "
                f"{_IMAGE}/; {_MODIFIED}."
            )
        if not path.is_file():
            raise ModelFileError(
                f"{root}: image file {relative!r} is missing. The model directory is "
                "incomplete; copy the whole directory or save the model again."
            )
        blob = path.read_bytes()
        if len(blob) != entry.get("bytes") or _sha256(blob) != entry.get("sha256"):
            raise ModelFileError(
                f"{root}: image file {relative!r} does not match its SHA-256 in {_MANIFEST} "
                f"({len(blob)} bytes, expected {entry.get('bytes')}); {_MODIFIED}."
            )
        files[relative] = entry
    on_disk = (
        {p.relative_to(root).as_posix() for p in (root / _IMAGE).rglob("*") if p.is_file()}
        if (root / _IMAGE).is_dir()
        else set()
    )
    unlisted = sorted(on_disk - set(files))
    if unlisted:
        raise ModelFileError(
            f"{root}: {unlisted[:5]} under {_IMAGE}/ are not listed in {_MANIFEST}, so their "
            f"content is not checked; {_MODIFIED}."
        )
    return files


def _restore_image(
    manifest: Mapping[str, Any], root: Path, params: dict[str, Any], state: dict[str, Any]
) -> None:
    """Point ``image_model`` and the image state at the verified copies inside ``root``."""
    fitted = state.get("image_state")
    section = manifest.get("image")
    if fitted is None:
        if section is not None or params.get("image_model") is not None:
            raise ModelFileError(
                f"{root}: {_MANIFEST} names an image model but holds no image-feature state; "
                f"{_MODIFIED}."
            )
        return
    if section is None:
        if manifest.get("format_version") == 1:
            warnings.warn(
                f"{root} was saved by an earlier lesionboost that kept its image model outside "
                f"the folder ({params.get('image_model') or 'the built-in embedder'}); it "
                "predicts only while those files stay in place. Save it again with save_model() "
                "to copy them into the folder.",
                DataWarning,
                stacklevel=3,
            )
            return
        raise ModelFileError(
            f"{root}: {_MANIFEST} has an image-feature state but no 'image' section listing its "
            f"image model files; {_MODIFIED}."
        )
    files = _check_image_files(section, root)
    embedder, scorer = section.get("embedder"), section.get("scorer")
    if embedder != "builtin" and embedder not in files:
        raise ModelFileError(
            f"{root}: the image embedder {embedder!r} named in {_MANIFEST} is not one of its "
            f"hashed image files; {_MODIFIED}."
        )
    recorded = fitted.get("embedder") if isinstance(fitted, dict) else None
    if (
        not isinstance(recorded, dict)
        or recorded.get("model") != embedder
        or (embedder != "builtin" and recorded.get("sha256") != files[embedder]["sha256"])
    ):
        raise ModelFileError(
            f"{root}: the image-feature state was not fitted with the embedder {embedder!r} "
            f"that the folder holds; {_MODIFIED}."
        )
    precision = section.get("precision")
    if precision not in (None, "fp32", "tf32", "fp16") or precision != recorded.get("precision"):
        raise ModelFileError(
            f"{root}: the image section of {_MANIFEST} records the embedding precision "
            f"{precision!r} but the image-feature state {recorded.get('precision')!r}; {_MODIFIED}."
        )
    if scorer is not None:
        listing = f"{scorer}/image-models.json"
        needed = [listing, f"{scorer}/oof.parquet"]
        if not isinstance(scorer, str) or any(name not in files for name in needed):
            raise ModelFileError(
                f"{root}: the image scorer {scorer!r} in {_MANIFEST} lacks its hashed "
                f"image-models.json or oof.parquet; {_MODIFIED}."
            )
        try:
            models = json.loads((root / listing).read_text(encoding="utf-8"))["models"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelFileError(f"{root}: {listing} cannot be read ({exc}); {_MODIFIED}.") from exc
        if (
            not isinstance(models, list)
            or not models
            or any(not isinstance(m, str) or f"{scorer}/{m}" not in files for m in models)
        ):
            raise ModelFileError(
                f"{root}: {listing} names fold models {str(models)[:80]} that are not hashed "
                f"files of the folder; {_MODIFIED}."
            )
    if fitted.get("scorer") != scorer or params.get("image_model") != _image_model_param(
        section, None
    ):
        raise ModelFileError(
            f"{root}: the image_model parameter {params.get('image_model')!r} or the image "
            f"state's scorer does not name the image files the folder holds; {_MODIFIED}."
        )
    base = root.resolve()
    image_model = _image_model_param(section, base)
    params["image_model"] = tuple(image_model) if isinstance(image_model, list) else image_model
    state["image_state"] = {**fitted, "scorer": None if scorer is None else str(base / scorer)}


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
    A model with image features gets copies of its image models under
    ``image/``, so that the folder predicts wherever it is moved.

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
    ModelFileError
        The model has image features and an image model they were fitted with
        (an ``.onnx`` file, the model that made an embeddings table, or the
        fold models of a scorer) cannot be found or no longer has the SHA-256
        recorded at fit; the message says what to pass. Nothing is written.

    Examples
    --------
    >>> import lesionboost as lb
    >>> X, y = lb.split_xy(lb.simulate_slice3d(30, seed=0).train)
    >>> model = lb.GBDTEnsembleClassifier(members=("lightgbm",), n_bags=1,
    ...                                   lightgbm_params={"n_estimators": 10})
    >>> model = model.fit(X.select(lb.schema.NUMERIC_COLUMNS), y)
    >>> path = save_model(model, "model")
    >>> sorted(p.name for p in path.iterdir() if not p.name.startswith("."))
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
            f"{target} already exists. Pass overwrite=True to replace it, or choose another path."
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
            params = model.get_params(deep=False)
            estimator_state = model._persistent_state()
            if estimator_state.get("image_state") is not None:
                # the image models are copied in; the parameter names the copies
                manifest["image"], estimator_state["image_state"] = _write_image_files(model, tmp)
                params["image_model"] = _image_model_param(manifest["image"], None)
            images = params.get("images")
            if isinstance(images, os.PathLike) or hasattr(images, "path"):
                params["images"] = str(getattr(images, "path", images))  # a path or ImageStore
            manifest["params"] = _jsonable(params, "parameter")
            manifest["featurizer"] = model.featurizer_.to_dict()
            manifest["estimator"] = _jsonable(estimator_state, "estimator state")
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
    must match its SHA-256 and stay inside the directory. A model with image
    features gets ``image_model`` pointing at the copies inside the directory.

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
        The directory is missing, incomplete, tampered with, truncated,
        inconsistent (category levels, feature lists, booster widths, image
        files or image state; see the module documentation), or was written
        by a newer format or schema version.

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

        params, state = dict(manifest["params"]), dict(manifest["estimator"])
        _check_estimator_state(manifest["featurizer"], state, ensemble, root)
        _restore_image(manifest, root, params, state)
        return LesionBoostClassifier._from_persistent_state(
            params, state, manifest["featurizer"], ensemble
        )
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelFileError(
            f"{root}: {_MANIFEST} is incomplete or inconsistent ({type(exc).__name__}: {exc}). "
            "Save the model again."
        ) from exc
